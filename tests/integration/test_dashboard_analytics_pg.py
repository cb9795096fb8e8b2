"""The analytics page's data on a real PostgreSQL server (Debian's package): the same seeded
checks as on SQLite, with the database's session time zone set far from UTC
(Asia/Kolkata, +05:30), so a bucket truncated in the session's zone would fail them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from _analytics import SEEDED_CHECKS, check_empty, check_old_schema, seed
from emotionops.dashboard.analytics import analytics_data, analytics_queries
from emotionops.warehouse import connect, init_schema

pytestmark = pytest.mark.integration

SESSION_ZONE = "Asia/Kolkata"


@pytest.fixture()
def engine(postgres_server):
    """A fresh PostgreSQL database per test whose sessions default to SESSION_ZONE."""
    name = f"wh_{uuid.uuid4().hex[:10]}"
    url = postgres_server.create_database(name)
    admin = connect(url, connect_timeout_s=5)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE {name} SET timezone = '{SESSION_ZONE}'")
    admin.dispose()
    eng = connect(url, connect_timeout_s=5)
    with eng.connect() as conn:
        assert conn.execute(text("SHOW timezone")).scalar() == SESSION_ZONE
    init_schema(eng)
    yield eng
    eng.dispose()


@pytest.mark.parametrize("check", SEEDED_CHECKS, ids=lambda f: f.__name__)
def test_seeded_warehouse(engine, check) -> None:
    seed(engine)
    check(engine)


def test_empty_warehouse_says_so(engine) -> None:
    check_empty(engine)


def test_old_schema_asks_for_warehouse_init(engine) -> None:
    check_old_schema(engine)


def test_buckets_come_back_as_utc_datetimes(engine) -> None:
    """The driver hands timestamptz back in the session's zone; the bucket is UTC anyway."""
    seed(engine)
    with engine.connect() as conn:
        got = conn.execute(analytics_queries(bucket="day")["tracks"]).all()
    assert [(r.camera_id, r.bucket_start) for r in got] == [
        ("cam-a", datetime(2026, 12, 1, tzinfo=UTC)),
        ("cam-a", datetime(2026, 12, 2, tzinfo=UTC)),
        ("cam-b", datetime(2026, 12, 1, tzinfo=UTC)),
    ]
    assert all(r.bucket_start.utcoffset().total_seconds() == 0 for r in got)
    assert analytics_data(engine, bucket="day")["rows"][0]["bucket_start"].endswith("+00:00")
