"""The data warehouse: schema, backends chosen by URL, migrations, idempotent loaders, report.

Library functions (used by the CLI, the pipeline stages and so the Airflow DAG):
`connect`, `init_schema`/`migrate`, `load_urls`, `load_images`, `load_dataset_version`,
`load_run` (an MLflow run -> the reporting tables), `load_promotions`,
`load_emotion_events`, `load_url_outcomes`, `load_validation_results`, `table_counts`, `build_report`/`render_report`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emotionops.warehouse.db import (
    WarehouseError,
    WarehouseTimeout,
    connect,
    safe_url,
    upsert,
    write_tables,
)
from emotionops.warehouse.loaders import (
    check_rows,
    load_dataset_version,
    load_emotion_events,
    load_images,
    load_promotions,
    load_table,
    load_training_run,
    load_url_outcomes,
    load_urls,
    load_validation_results,
    table_counts,
    url_outcome_rows,
    validation_rows,
)
from emotionops.warehouse.migrations import MigrationReport, migrate

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from emotionops.settings import Settings


def init_schema(engine: Engine) -> list[str]:
    """Create missing tables and apply pending migrations; returns the tables created."""
    return migrate(engine).created


def open_warehouse(settings: Settings, migrate_schema: bool = True) -> Engine:
    """The engine for the configured warehouse (checked), migrated to the latest schema."""
    engine = connect(settings.resolved_warehouse_url(), settings.warehouse_connect_timeout_s)
    if migrate_schema:
        migrate(engine)
    return engine


def load_run(engine: Engine, tracking_uri: str, run_id: str, run_date: str | None = None):
    """Copy a finished MLflow training run into the reporting tables (see warehouse.runs)."""
    from emotionops.warehouse.runs import load_run as _load_run

    return _load_run(engine, tracking_uri, run_id, run_date)


def build_report(engine: Engine):
    from emotionops.warehouse.report import build_report as _build

    return _build(engine)


def render_report(data, where: str = "") -> str:
    from emotionops.warehouse.report import render_report as _render

    return _render(data, where)


__all__ = [
    "MigrationReport",
    "WarehouseError",
    "WarehouseTimeout",
    "build_report",
    "check_rows",
    "connect",
    "init_schema",
    "load_dataset_version",
    "load_emotion_events",
    "load_images",
    "load_promotions",
    "load_run",
    "load_table",
    "load_training_run",
    "load_url_outcomes",
    "load_urls",
    "load_validation_results",
    "migrate",
    "open_warehouse",
    "render_report",
    "safe_url",
    "table_counts",
    "upsert",
    "url_outcome_rows",
    "validation_rows",
    "write_tables",
]
