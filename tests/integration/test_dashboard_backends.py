"""The dashboard's data on a real PostgreSQL gives what it gives on SQLite: the same seeded
warehouse read by every page's data function (Oracle: the queries are compiled in the unit
tests, as for the rest of the warehouse)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from _dashboard_seed import seed_dashboard
from emotionops.dashboard.pages import PAGES, page_data
from emotionops.params import Params
from emotionops.warehouse import connect

pytestmark = pytest.mark.integration


def read_pages(url: str) -> dict[str, dict]:
    engine = connect(url, connect_timeout_s=5)
    try:
        return {name: page_data(name, engine, Params()) for name in PAGES}
    finally:
        engine.dispose()


def test_postgresql_pages_equal_sqlite_pages(postgres_server, tmp_path: Path) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    pg_url = postgres_server.create_database(f"dash_{uuid.uuid4().hex[:10]}")
    seed_dashboard(sqlite_url, tmp_path / "data-sqlite")
    seed_dashboard(pg_url, tmp_path / "data-pg")
    on_sqlite, on_pg = read_pages(sqlite_url), read_pages(pg_url)
    for name in PAGES:
        assert on_pg[name] == on_sqlite[name], name
    assert len(on_pg["models"]["runs"]) == 3
    assert on_pg["analytics"]["rows"] and on_pg["quality"]["samples"]
