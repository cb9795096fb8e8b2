"""The data warehouse: schema, backends chosen by URL, idempotent loaders."""

from emotionops.warehouse.db import WarehouseError, connect, init_schema, upsert
from emotionops.warehouse.loaders import (
    load_dataset_version,
    load_emotion_events,
    load_images,
    load_training_run,
    load_urls,
    table_counts,
)

__all__ = [
    "WarehouseError",
    "connect",
    "init_schema",
    "load_dataset_version",
    "load_emotion_events",
    "load_images",
    "load_training_run",
    "load_urls",
    "table_counts",
    "upsert",
]
