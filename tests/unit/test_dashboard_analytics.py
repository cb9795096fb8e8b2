"""The analytics page's data layer on SQLite (seeded through the loaders), and its queries
compiled for Oracle: exact sums per UTC bucket, filters, range edges, hot swaps, the cap."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import mssql, oracle, postgresql, sqlite
from sqlalchemy.exc import CompileError

from _analytics import SEEDED_CHECKS, check_empty, check_old_schema, seed, window
from emotionops.dashboard.analytics import analytics_data, analytics_queries, bucket_expression
from emotionops.warehouse import connect, init_schema, load_emotion_events
from emotionops.warehouse.schema import emotion_event, training_run


@pytest.fixture()
def engine(tmp_path):
    eng = connect(f"sqlite:///{tmp_path / 'warehouse.db'}")
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


def test_rows_from_before_migration_4_have_unknown_tracks(engine) -> None:
    rows = window("cam-old", datetime(2026, 1, 5, 8, 0, tzinfo=UTC), None, {"sad": (3, 0)}, 0)
    for row in rows:
        row["observations"] = row["distinct_tracks"] = None
    load_emotion_events(engine, rows)
    data = analytics_data(engine, bucket="day")
    assert data["rows"] == [
        {"camera_id": "cam-old", "bucket_start": "2026-01-05T00:00:00+00:00", "label": "sad",
         "faces": 3, "observations": None}
    ]  # fmt: skip
    assert data["tracks"] == [
        {"camera_id": "cam-old", "bucket_start": "2026-01-05T00:00:00+00:00", "tracks": None}
    ]


@pytest.mark.parametrize("bucket", ["hour", "day"])
@pytest.mark.parametrize("name", ["cameras", "labels", "tracks"])
def test_queries_compile_for_oracle(name, bucket) -> None:
    start, end = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 8, tzinfo=UTC)
    query = analytics_queries("cam-a", start, end, bucket, limit=101)[name]
    sql = str(query.compile(dialect=oracle.dialect()))
    assert '"' not in sql and " LIMIT " not in sql, sql
    if name == "cameras":
        return
    unit = "HH" if bucket == "hour" else "DD"
    assert sql.count("TRUNC(") == 3 and f", '{unit}')" in sql, sql  # select, group, order
    assert "SYS_EXTRACT_UTC" not in sql  # window_start is a TIMESTAMP holding UTC already
    assert "FETCH FIRST" in sql and "date_trunc" not in sql
    assert "emotion_event.window_start >= :window_start_1" in sql
    assert "emotion_event.window_start < :window_start_2" in sql
    assert "emotion_event.camera_id = :camera_id_1" in sql
    params = query.compile(dialect=oracle.dialect()).params
    # bound as naive UTC, as the TIMESTAMP key column holds it
    assert params["window_start_1"] == start


def test_bucket_sql_per_dialect() -> None:
    col = emotion_event.c.window_start
    assert str(bucket_expression(col, "day").compile(dialect=postgresql.dialect())) == (
        "(date_trunc('day', emotion_event.window_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"
    )
    assert str(bucket_expression(col, "hour").compile(dialect=sqlite.dialect())) == (
        "(substr(emotion_event.window_start, 1, 13) || ':00:00')"
    )
    # a TIMESTAMP WITH TIME ZONE column goes through UTC before TRUNC
    tz = bucket_expression(training_run.c.started_at, "day").compile(dialect=oracle.dialect())
    assert str(tz) == "TRUNC(SYS_EXTRACT_UTC(training_run.started_at), 'DD')"
    with pytest.raises(CompileError, match="no UTC hour bucket for the mssql dialect"):
        select(bucket_expression(col, "hour")).compile(dialect=mssql.dialect())


def test_bucket_unit_is_part_of_the_statement_cache_key() -> None:
    col = emotion_event.c.window_start
    hour, day = bucket_expression(col, "hour"), bucket_expression(col, "day")
    assert hour._generate_cache_key() != day._generate_cache_key()
    assert hour._generate_cache_key() == bucket_expression(col, "hour")._generate_cache_key()
