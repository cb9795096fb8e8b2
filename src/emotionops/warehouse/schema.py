"""Warehouse tables, dialect-neutral (SQLAlchemy Core).

Keys are content hashes or natural keys so that every load is an idempotent upsert.
Identifiers stay under 30 characters so the same schema works on older Oracle releases.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

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
)

emotion_event = Table(
    "emotion_event",
    metadata,
    Column("camera_id", String(64), primary_key=True),
    Column("window_start", DateTime(timezone=True), primary_key=True),
    Column("label", String(32), primary_key=True),
    Column("window_seconds", Float, nullable=False),
    Column("face_count", Integer, nullable=False),
    Column("mean_confidence", Float),
    Column("model_version", String(16)),
)
