"""Idempotent, transactional loads into the warehouse tables.

Each loader checks its rows before touching the database, then writes every row in one
transaction: a crash mid-batch leaves nothing half-written, and a retry updates in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, Table, func, select
from sqlalchemy.exc import SQLAlchemyError

from emotionops.warehouse.db import WarehouseError, upsert
from emotionops.warehouse.schema import (
    dataset_version,
    emotion_event,
    image,
    image_url,
    metadata,
    training_run,
)


def _rows_for(table: Table, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Keep the table's columns; refuse rows missing a non-nullable column."""
    required = [c.name for c in table.columns if not c.nullable]
    names = [c.name for c in table.columns]
    out = []
    for i, row in enumerate(rows):
        missing = [k for k in required if row.get(k) in (None, "")]
        if missing:
            raise WarehouseError(f"{table.name}: row {i} lacks required {missing}: {dict(row)}")
        out.append({k: row.get(k) for k in names})
    return out


def _check_labels(table: Table, rows: Sequence[Mapping[str, Any]], labels: Sequence[str] | None):
    if labels is None:
        return
    unknown = sorted({str(r["label"]) for r in rows} - set(labels))
    if unknown:
        raise WarehouseError(f"{table.name}: labels not in the label set {list(labels)}: {unknown}")


def _load(
    engine: Engine,
    table: Table,
    rows: Iterable[Mapping[str, Any]],
    labels: Sequence[str] | None = None,
) -> int:
    clean = _rows_for(table, rows)
    if "label" in table.c:
        _check_labels(table, clean, labels)
    try:
        with engine.begin() as conn:
            return upsert(conn, table, clean)
    except SQLAlchemyError as exc:
        first = str(exc).splitlines()[0]
        if "no such table" in first or "does not exist" in first or "ORA-00942" in first:
            raise WarehouseError(
                f"table {table.name} is missing: run `emotionops warehouse init` first"
            ) from exc
        raise WarehouseError(f"loading {table.name} failed, nothing was written: {first}") from exc


def load_urls(engine: Engine, rows: Iterable[Mapping[str, Any]], labels=None) -> int:
    return _load(engine, image_url, rows, labels)


def load_images(engine: Engine, rows: Iterable[Mapping[str, Any]], labels=None) -> int:
    return _load(engine, image, rows, labels)


def load_dataset_version(engine: Engine, row: Mapping[str, Any]) -> int:
    return _load(engine, dataset_version, [row])


def load_training_run(engine: Engine, row: Mapping[str, Any]) -> int:
    return _load(engine, training_run, [row])


def load_emotion_events(engine: Engine, windows: Iterable[Any]) -> int:
    """Rows from `edge.report.EmotionWindow` objects (or mappings with the same fields)."""
    rows = []
    for w in windows:
        get = w.get if isinstance(w, Mapping) else lambda k, w=w: getattr(w, k)
        rows.append(
            {
                "camera_id": get("camera_id"),
                "window_start": get("window_start"),
                "label": get("label"),
                "window_seconds": get("window_seconds"),
                "face_count": get("count"),
                "mean_confidence": get("mean_confidence"),
                "model_version": None
                if get("model_version") is None
                else str(get("model_version")),
            }
        )
    return _load(engine, emotion_event, rows)


def table_counts(engine: Engine) -> dict[str, int]:
    """Row count per warehouse table (missing tables count as 0)."""
    counts = {}
    with engine.connect() as conn:
        for name, table in metadata.tables.items():
            try:
                counts[name] = conn.execute(select(func.count()).select_from(table)).scalar_one()
            except SQLAlchemyError:
                counts[name] = 0
    return counts
