"""Warehouse tables, dialect-neutral (SQLAlchemy Core): SQLite, PostgreSQL and Oracle.

Keys are content hashes or natural keys so that every load is an idempotent upsert.
Portability rules, checked by tests/unit/test_warehouse_oracle.py against each dialect's
compiler: identifiers are at most 30 characters (Oracle 12.1 and older), no identifier is a
reserved word on Oracle or PostgreSQL (nothing is quoted there, so hand-written SQL and BI
tools use plain names; SQLite quotes `query`, which it accepts either way), strings have explicit lengths under Oracle's 4000-byte VARCHAR2
limit, and timestamps are stored in UTC through `UtcDateTime`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.dialects import oracle
from sqlalchemy.types import TypeDecorator, TypeEngine


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend.

    PostgreSQL stores `timestamptz`; SQLite stores text (it has no time zones, so values are
    converted to UTC before they are written and read back as UTC); Oracle stores
    TIMESTAMP WITH TIME ZONE, except in keys (`key=True`), where Oracle refuses that type
    (ORA-02329) and a plain TIMESTAMP holding UTC is used instead.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def __init__(self, key: bool = False) -> None:
        super().__init__()
        self.key = key

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "oracle":
            return dialect.type_descriptor(oracle.TIMESTAMP(timezone=not self.key))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if dialect.name in ("sqlite", "oracle"):
            # SQLite keeps no offset; python-oracledb ignores tzinfo when binding. The MERGE
            # statement attaches UTC explicitly (FROM_TZ) for TIMESTAMP WITH TIME ZONE.
            return utc.replace(tzinfo=None)
        return utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

# Version 1 (the original schema) ------------------------------------------------------------

image_url = Table(
    "image_url",
    metadata,
    Column("url_sha256", String(64), primary_key=True, comment="sha256 of the normalised URL"),
    Column("url", String(2048), nullable=False),
    Column("label", String(32), nullable=False),
    Column("query", String(256)),
    Column("engine", String(32), nullable=False),
    Column("rank", Integer),
    Column("page_url", String(2048)),
    Column("run_date", String(10), nullable=False),
)

image = Table(
    "image",
    metadata,
    Column("sha256", String(64), primary_key=True, comment="sha256 of the downloaded bytes"),
    Column("url_sha256", String(64)),
    Column("label", String(32), nullable=False),
    Column("width", Integer),
    Column("height", Integer),
    Column("format", String(16)),
    Column("n_faces", Integer),
    Column("status", String(16), nullable=False, comment="accepted | rejected"),
    Column("reason", String(256)),
    Column("face_path", String(512)),
    Column("run_date", String(10)),
    Column(
        "votes",
        String(512),
        comment="annotator votes by label, JSON (dataset.votes.encode_votes); NULL: none",
    ),
)

dataset_version = Table(
    "dataset_version",
    metadata,
    Column("version_id", String(64), primary_key=True),
    Column("labels", String(512), nullable=False),
    Column("n_images", Integer, nullable=False),
    Column("n_train", Integer, nullable=False),
    Column("n_val", Integer, nullable=False),
    Column("n_test", Integer, nullable=False),
    Column("run_date", String(10)),
)

training_run = Table(
    "training_run",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("model_name", String(128), nullable=False),
    Column("model_version", String(16)),
    Column("dataset_version", String(64)),
    Column("test_accuracy", Float),
    Column("val_accuracy", Float),
    Column("promoted", Boolean),
    Column("run_date", String(10)),
    # Added by migration 2 (nullable: rows loaded before it keep NULLs).
    Column("experiment_id", String(64)),
    Column("model_type", String(64)),
    Column("epochs_run", Integer),
    Column("n_train", Integer),
    Column("n_val", Integer),
    Column("n_test", Integer),
    Column("test_macro_f1", Float),
    Column("git_commit", String(40)),
    Column("started_at", UtcDateTime()),
    # Added by migration 5, for the dashboard's model page.
    Column("labels", String(512), comment="JSON list, in the model's output order"),
    Column("train_accuracy", Float, comment="last epoch"),
    Column("train_loss", Float, comment="last epoch"),
    Column("val_loss", Float, comment="last epoch"),
    Column("test_loss", Float, comment="cross-entropy of the deployed model on test"),
    Column("duration_s", Float, comment="training time (fit + distillation)"),
    Column("key_params", String(2000), comment="JSON object of the recipe's main params"),
)

#: What `emotion_event.model_version` holds when the edge did not know its model's version.
#: Not '' as a key column would suggest: Oracle stores '' as NULL, and a key is NOT NULL.
UNKNOWN_MODEL_VERSION = "unknown"

#: One row per (camera, window, label, model version): a hot swap in the middle of a window
#: gives two rows, one per model, instead of the second overwriting the first (migration 4).
emotion_event = Table(
    "emotion_event",
    metadata,
    Column("camera_id", String(64), primary_key=True),
    Column("window_start", UtcDateTime(key=True), primary_key=True),
    Column("label", String(32), primary_key=True),
    Column("window_seconds", Float, nullable=False),
    Column("face_count", Integer, nullable=False),
    Column("mean_confidence", Float),
    Column(
        "model_version",
        String(16),
        primary_key=True,
        comment=f"registry version; '{UNKNOWN_MODEL_VERSION}' when the edge had none",
    ),
    # Added by migration 4 (nullable: rows loaded before it keep NULLs).
    Column("observations", Integer, comment="labelled face-frames behind face_count"),
    Column("distinct_tracks", Integer, comment="faces tracked in the window, all labels"),
)

#: The dashboard's analytics page filters on a date range, often without a camera; the
#: primary key starts with camera_id, so it cannot serve that (migration 5).
Index("ix_emotion_event_start", emotion_event.c.window_start)

#: emotion_event summed per (camera, UTC hour, label), kept exact by `load_emotion_events`
#: (in the transaction of its upsert) and backfilled by migration 6 (warehouse/rollup.py):
#: the dashboard's analytics read these rows instead of aggregating every event.
emotion_hour = Table(
    "emotion_hour",
    metadata,
    Column("camera_id", String(64), primary_key=True),
    Column("hour_start", UtcDateTime(key=True), primary_key=True),
    Column("label", String(32), primary_key=True),
    Column("faces", Integer, nullable=False, comment="sum of face_count"),
    Column("observations", Integer, comment="sum of observations (NULL: all unknown)"),
    Column(
        "tracks",
        Integer,
        comment="the camera-hour's tracks, all labels: distinct_tracks once per (window, "
        "model version), summed; repeated on each label row",
    ),
    # Not key columns, so TIMESTAMP WITH TIME ZONE on Oracle (the rollup's insert sets UTC).
    Column("first_window", UtcDateTime(), nullable=False, comment="earliest window_start"),
    Column("last_window", UtcDateTime(), nullable=False, comment="latest window_start"),
)

# Version 2: a training run's reports and the promotion audit trail --------------------------

epoch_metric = Table(
    "epoch_metric",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("epoch", Integer, primary_key=True, comment="0-based, the MLflow step"),
    Column("train_accuracy", Float),
    Column("train_loss", Float),
    Column("val_accuracy", Float),
    Column("val_loss", Float),
)

class_metric = Table(
    "class_metric",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("label", String(32), primary_key=True),
    Column("eval_split", String(8), primary_key=True, comment="test"),
    Column("precision", Float),
    Column("recall", Float),
    Column("specificity", Float),
    Column("f1", Float),
    Column("support", Integer),
)

confusion_cell = Table(
    "confusion_cell",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("eval_split", String(8), primary_key=True),
    Column("true_label", String(32), primary_key=True),
    Column("pred_label", String(32), primary_key=True),
    Column("n_images", Integer, nullable=False),
)

model_promotion = Table(
    "model_promotion",
    metadata,
    Column("model_name", String(128), primary_key=True),
    Column("model_version", String(16), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("decided_at", UtcDateTime(key=True), primary_key=True),
    Column(
        "decision", String(16), nullable=False, comment="registered | promoted | refused | rollback"
    ),
    Column("previous_version", String(16)),
    Column("reason", String(512)),
    Column("metric_name", String(64)),
    Column("new_value", Float),
    Column("old_value", Float, comment="the previous alias holder's value"),
    Column("run_id", String(64)),
    Column("dataset_version", String(64)),
)

# Version 5: what each ingest run did, for the dashboard's data quality page ---------------

#: One row per URL of a run's manifest: URL cleanup refused it (stage 'url_cleanup', with
#: the rule that fired) or the downloader tried it (stage 'download': ok | rejected | failed).
url_outcome = Table(
    "url_outcome",
    metadata,
    Column("run_date", String(10), primary_key=True),
    Column("url_sha256", String(64), primary_key=True),
    Column("label", String(32)),
    Column("stage", String(16), nullable=False, comment="url_cleanup | download"),
    Column("status", String(16), nullable=False, comment="rejected | ok | failed"),
    Column("rule", String(64), comment="the URL cleanup rule that refused it"),
    Column("reason", String(512)),
    Column("sha256", String(64), comment="sha256 of the downloaded bytes (image.sha256)"),
    Column("path", String(512), comment="stored file, relative to the data folder"),
    Column("bytes", Integer),
    Column("duplicates", Integer, comment="more manifest rows of this URL that cleanup dropped"),
)

#: One row per (run date, suite): the latest Great Expectations result for that batch.
validation_result = Table(
    "validation_result",
    metadata,
    Column("run_date", String(10), primary_key=True),
    Column("suite", String(128), primary_key=True),
    Column("validated_at", UtcDateTime(), nullable=False),
    Column("success", Boolean, nullable=False),
    Column("evaluated", Integer, comment="expectations evaluated"),
    Column("failed", Integer, comment="expectations that failed"),
    Column("n_rows", Integer, comment="rows in the validated batch"),
    Column("docs_path", String(1024), comment="the result's Data Docs page, site-relative"),
)

# Coordination ---------------------------------------------------------------------------

#: One row per model while a promotion holds its lease (emotionops.warehouse.lease): the
#: warehouse is the one database every scheduler, worker and person shares, so a primary key
#: insert (or taking over an expired lease) is a lock that works across processes and machines.
promotion_lock = Table(
    "promotion_lock",
    metadata,
    Column("model_name", String(128), primary_key=True),
    Column("holder", String(128), nullable=False, comment="host:pid:random of the holder"),
    Column("expires_at", UtcDateTime(), nullable=False),
)

# Bookkeeping for `warehouse init` (see warehouse.migrate) ---------------------------------

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(256), nullable=False),
    Column("applied_at", UtcDateTime(), nullable=False),
)

#: Tables that hold data (everything except the migration bookkeeping), in load order.
DATA_TABLES: tuple[Table, ...] = (
    image_url,
    image,
    dataset_version,
    training_run,
    epoch_metric,
    class_metric,
    confusion_cell,
    model_promotion,
    emotion_event,
    emotion_hour,
    url_outcome,
    validation_result,
)
