"""What every dashboard page's data needs: the schema check, reading selects, JSON values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Select
from sqlalchemy.exc import SQLAlchemyError

from emotionops.warehouse.db import WarehouseError, first_line
from emotionops.warehouse.migrations import LATEST, current_version


def require_schema(engine: Engine) -> None:
    """A clear error instead of a missing-column failure on a warehouse not yet migrated."""
    try:
        version = current_version(engine)
    except SQLAlchemyError as exc:
        raise WarehouseError(f"reading the warehouse failed: {first_line(exc)}") from exc
    if version < LATEST:
        raise WarehouseError(
            f"the warehouse schema is at version {version}, the dashboard needs {LATEST}: "
            "run `emotionops warehouse init`"
        )


def read_all(engine: Engine, queries: dict[str, Select[Any]]) -> dict[str, list[dict[str, Any]]]:
    """Run each select in one connection; rows as dicts."""
    require_schema(engine)
    try:
        with engine.connect() as conn:
            return {
                name: [dict(r._mapping) for r in conn.execute(q)] for name, q in queries.items()
            }
    except SQLAlchemyError as exc:
        raise WarehouseError(f"reading the warehouse failed: {first_line(exc)}") from exc


def iso(value: datetime | None) -> str | None:
    """An aware datetime as ISO-8601 UTC ('2026-12-03T18:00:00Z'), what the pages parse."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
