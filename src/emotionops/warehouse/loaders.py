"""Idempotent, transactional loads into the warehouse tables.

Every loader checks all of its rows before it touches the database (required values, types,
lengths, labels, conflicting duplicates, an empty batch) and names the first bad row; then
`db.write_tables` writes every row in one transaction, in batches. So bad input and crashes
leave nothing half-written, and a retry updates rows in place instead of duplicating them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Engine, Float, Integer, String, Table, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from emotionops.acquire.urls import DUPLICATE_RULE
from emotionops.warehouse.db import (
    BATCH_SIZE,
    WarehouseError,
    check_tables,
    key_columns,
    write_tables,
)
from emotionops.warehouse.rollup import refresh_hours
from emotionops.warehouse.schema import (
    DATA_TABLES,
    UNKNOWN_MODEL_VERSION,
    UtcDateTime,
    dataset_version,
    emotion_event,
    emotion_hour,
    image,
    image_url,
    model_promotion,
    training_run,
    url_outcome,
    validation_result,
)

if TYPE_CHECKING:
    from emotionops.validation.report import ValidationReport

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def _coerce(table: Table, col_name: str, value: Any) -> Any:
    """`value` as the column's Python type, or a ValueError saying why not."""
    col = table.c[col_name]
    kind = col.type
    if isinstance(value, str) and value.strip() == "" and not isinstance(kind, String):
        return None
    if value is None:
        return None
    if isinstance(kind, UtcDateTime):
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an ISO date-time") from None
        if not isinstance(value, datetime):
            raise ValueError(f"{value!r} is not a date-time")
        return value
    if isinstance(kind, Boolean):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"{value!r} is not a boolean")
    if isinstance(kind, Integer):
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise ValueError(f"{value!r} is not an integer") from None
        raise ValueError(f"{value!r} is not an integer")
    if isinstance(kind, Float):
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
        # NaN/inf: SQLite stores NULL, Oracle's NUMBER cannot hold them; NULL everywhere.
        return number if math.isfinite(number) else None
    if isinstance(kind, String):
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"{value!r} ({type(value).__name__}) is not text")
        text = str(value)
        if text == "":
            return None  # Oracle stores '' as NULL: make every backend agree
        if kind.length is not None and len(text) > kind.length:
            raise ValueError(f"is {len(text)} characters long, the column holds {kind.length}")
        return text
    return value


def check_rows(
    table: Table,
    rows: Iterable[Mapping[str, Any]],
    labels: Sequence[str] | None = None,
    label_columns: Sequence[str] = ("label",),
    allow_empty: bool = False,
) -> list[dict[str, Any]]:
    """Rows reduced to the table's columns and converted to their types; refuses (with the
    first offending row) missing required values, wrong types, over-long text, labels not in
    `labels`, and two rows with the same key but different values. Exact duplicates collapse.
    """
    names = [c.name for c in table.columns]
    required = [c.name for c in table.columns if not c.nullable]
    keys = key_columns(table)
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for i, raw in enumerate(rows):
        if not isinstance(raw, Mapping):
            raise WarehouseError(f"{table.name}: row {i} is not a mapping: {raw!r}")
        row: dict[str, Any] = {}
        for name in names:
            try:
                row[name] = _coerce(table, name, raw.get(name))
            except ValueError as exc:
                raise WarehouseError(f"{table.name}: row {i}, column {name}: {exc}") from None
        missing = [k for k in required if row[k] is None]
        if missing:
            raise WarehouseError(f"{table.name}: row {i} lacks required {missing}: {dict(raw)}")
        if labels is not None:
            for col in label_columns:
                if row.get(col) is not None and row[col] not in labels:
                    raise WarehouseError(
                        f"{table.name}: row {i} has {col} {row[col]!r}, not in the label set "
                        f"{list(labels)}"
                    )
        key = tuple(row[k] for k in keys)
        if key in out and out[key] != row:
            raise WarehouseError(
                f"{table.name}: row {i} repeats key {dict(zip(keys, key, strict=True))} "
                "with different values; nothing was loaded"
            )
        out[key] = row
    if not out and not allow_empty:
        raise WarehouseError(f"{table.name}: nothing to load (empty batch)")
    return list(out.values())


def load_table(
    engine: Engine,
    table: Table,
    rows: Iterable[Mapping[str, Any]],
    labels: Sequence[str] | None = None,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Check then upsert `rows` into `table` in one transaction; returns the rows written."""
    clean = check_rows(table, rows, labels)
    return write_tables(engine, [(table, clean)], batch_size)[table.name]


def load_urls(
    engine: Engine,
    rows: Iterable[Mapping[str, Any]],
    labels: Sequence[str] | None = None,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Cleaned URL manifest rows -> image_url (key: sha256 of the normalised URL)."""
    return load_table(engine, image_url, rows, labels, batch_size)


def load_images(
    engine: Engine,
    rows: Iterable[Mapping[str, Any]],
    labels: Sequence[str] | None = None,
    batch_size: int = BATCH_SIZE,
    dataset: Mapping[str, Any] | None = None,
) -> int:
    """Image metadata -> image (key: sha256 of the bytes), and the `dataset` version row
    built from them when given, in one transaction. Only accepted images must carry a label
    of the label set: a rejected row records why an off-set image was refused. images.csv's
    `votes` '' (no votes) is stored as NULL, as Oracle would anyway."""
    clean = check_rows(
        image,
        (({**r, "votes": r.get("votes") or None} if isinstance(r, Mapping) else r) for r in rows),
    )
    if labels is not None:
        check_rows(image, [r for r in clean if r["status"] == "accepted"], labels, allow_empty=True)
    batches = [(image, clean)]
    if dataset is not None:
        batches.append((dataset_version, check_rows(dataset_version, [dataset])))
    return write_tables(engine, batches, batch_size)[image.name]


def load_dataset_version(engine: Engine, row: Mapping[str, Any]) -> int:
    return load_table(engine, dataset_version, [row])


def load_training_run(engine: Engine, row: Mapping[str, Any]) -> int:
    return load_table(engine, training_run, [row])


def load_promotions(engine: Engine, records: Iterable[Any]) -> int:
    """Registry audit records (`registry.AliasMove` or mappings) -> model_promotion."""
    rows = [r if isinstance(r, Mapping) else r.as_row() for r in records]
    return load_table(engine, model_promotion, rows)


def load_emotion_events(engine: Engine, windows: Iterable[Any]) -> int:
    """Rows from `edge.report.EmotionWindow` objects (or mappings with the same fields, e.g.
    the edge outbox's JSON rows with an ISO-8601 window_start); keyed by (camera_id,
    window_start, label, model_version), a missing version stored as UNKNOWN_MODEL_VERSION.

    In the same transaction, the emotion_hour rows of every (camera, UTC hour) the batch
    touches are recomputed from emotion_event (warehouse/rollup.py), so the rollup stays
    exact when a window is sent again or gains a second model version."""
    rows = []
    for w in windows:
        get = w.get if isinstance(w, Mapping) else lambda k, w=w: getattr(w, k, None)
        version = get("model_version")
        rows.append(
            {
                "camera_id": get("camera_id"),
                "window_start": get("window_start"),
                "label": get("label"),
                "window_seconds": get("window_seconds"),
                "face_count": get("count"),
                "mean_confidence": get("mean_confidence"),
                "model_version": UNKNOWN_MODEL_VERSION
                if version is None or str(version) == ""
                else str(version),
                "observations": get("observations"),
                "distinct_tracks": get("distinct_tracks"),
            }
        )
    clean = check_rows(emotion_event, rows)
    touched = {(r["camera_id"], r["window_start"]) for r in clean}

    def roll_up(conn: Connection) -> None:
        check_tables(conn, [emotion_hour])
        refresh_hours(conn, touched)

    return write_tables(engine, [(emotion_event, clean)], then=roll_up)[emotion_event.name]


#: url_outcome.stage values.
URL_CLEANUP_STAGE = "url_cleanup"
DOWNLOAD_STAGE = "download"


def _clip(text: Any, column: str) -> str | None:
    """Free text (a reason) cut to the column's length: a long error message must not make
    the whole run's load fail."""
    if text is None or text == "":
        return None
    limit = url_outcome.c[column].type.length
    text = str(text)
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def url_outcome_rows(
    run_date: str,
    rejected: Iterable[Mapping[str, Any]],
    downloads: Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """One url_outcome row per distinct URL of a run: its download record (stage
    'download', status ok | rejected | failed) or, for URLs cleanup dropped, its
    rejected.csv row (stage 'url_cleanup', status 'rejected', the rule that fired).

    Keys are (run_date, url_sha256 of the normalised URL), so a manifest row that cleanup
    dropped as a duplicate of a kept URL is that URL: its download record stands for it
    (and the first of several rejected copies of one URL wins, in manifest order). A URL in
    both files (rejected.csv rewritten with other cleanup rules after the download) keeps
    its download record. Cleanup's later copies of a URL (rule 'duplicate') are counted in
    that URL's `duplicates`. Every row must carry url_sha256."""
    out: dict[str, dict[str, Any]] = {}
    for r in downloads:
        ok = r.get("status") == "ok"
        out.setdefault(
            str(r.get("url_sha256") or ""),
            {
                "run_date": run_date,
                "url_sha256": r.get("url_sha256"),
                "label": r.get("label"),
                "stage": DOWNLOAD_STAGE,
                "status": r.get("status"),
                "rule": None,
                "reason": _clip(r.get("reason"), "reason"),
                "sha256": r.get("sha256") if ok else None,
                "path": r.get("path") if ok else None,
                "bytes": r.get("bytes") if ok else None,
                "duplicates": 0,
            },
        )
    for r in rejected:
        key = str(r.get("url_sha256") or "")
        if r.get("rule") == DUPLICATE_RULE and key in out:
            out[key]["duplicates"] += 1  # the same URL again: counted on its own row
            continue
        out.setdefault(
            str(r.get("url_sha256") or ""),
            {
                "run_date": run_date,
                "url_sha256": r.get("url_sha256"),
                "label": r.get("label"),
                "stage": URL_CLEANUP_STAGE,
                "status": "rejected",
                "rule": _clip(r.get("rule"), "rule"),
                "reason": _clip(r.get("reason"), "reason"),
                "sha256": None,
                "path": None,
                "bytes": None,
                "duplicates": 0,
            },
        )
    missing = out.pop("", None)
    if missing is not None:
        raise WarehouseError(f"url_outcome: a row has no url_sha256: {missing}")
    return list(out.values())


def load_url_outcomes(
    engine: Engine,
    run_date: str,
    rejected: Iterable[Mapping[str, Any]],
    downloads: Iterable[Mapping[str, Any]],
    batch_size: int = BATCH_SIZE,
) -> int:
    """A run's URL cleanup rejects and download records -> url_outcome (see
    url_outcome_rows), upserted on (run_date, url_sha256): a re-run updates in place. An
    empty run (no manifest: imported data only) writes nothing."""
    rows = check_rows(
        url_outcome, url_outcome_rows(run_date, rejected, downloads), allow_empty=True
    )
    if not rows:
        return 0
    return write_tables(engine, [(url_outcome, rows)], batch_size)[url_outcome.name]


def validation_rows(
    reports: Iterable[ValidationReport], run_date: str, now: datetime | None = None
) -> list[dict[str, Any]]:
    """One validation_result row per suite of `reports`: GX's run time, success, expectation
    counts, the rows the suite saw, and its result page relative to the Data Docs site root
    (the folder of the site's index.html; the index itself when the page is unknown).
    `now` stands in for a missing GX run time (GX always sets it)."""
    rows = []
    for report in reports:
        root = Path(report.data_docs).parent
        broken = {f.suite for f in report.failures}
        for s in report.suites:
            try:
                page = Path(s.page).relative_to(root).as_posix() if s.page else None
            except ValueError:  # a page outside the site: link the index
                page = None
            rows.append(
                {
                    "run_date": run_date,
                    "suite": s.suite,
                    "validated_at": s.validated_at or now or datetime.now(UTC),
                    "success": s.failed == 0 and s.suite not in broken,
                    "evaluated": s.evaluated,
                    "failed": s.failed,
                    "n_rows": s.n_rows,
                    "docs_path": page or Path(report.data_docs).name,
                }
            )
    return rows


def load_validation_results(
    engine: Engine, reports: Iterable[ValidationReport], run_date: str
) -> int:
    """Great Expectations reports -> validation_result, one row per (run_date, suite): a
    re-validation of the same run date replaces the earlier result."""
    return load_table(engine, validation_result, validation_rows(reports, run_date))


def table_counts(engine: Engine) -> dict[str, int]:
    """Row count per warehouse data table (a missing table counts as 0)."""
    counts = {}
    with engine.connect() as conn:
        for table in DATA_TABLES:
            try:
                counts[table.name] = conn.execute(
                    select(func.count()).select_from(table)
                ).scalar_one()
            except SQLAlchemyError:
                conn.rollback()  # PostgreSQL aborts the transaction on an error
                counts[table.name] = 0
    return counts
