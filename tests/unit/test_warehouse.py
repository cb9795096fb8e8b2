"""Warehouse loads on SQLite: idempotent, transactional, clear errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from emotionops.warehouse import (
    WarehouseError,
    connect,
    init_schema,
    load_emotion_events,
    load_urls,
    table_counts,
)
from emotionops.warehouse.schema import emotion_event, image_url, metadata


def _url_rows(n: int, label: str = "happy") -> list[dict]:
    return [
        {
            "url_sha256": f"{i:064x}",
            "url": f"http://example.com/{i}.jpg",
            "label": label,
            "engine": "local",
            "rank": i,
            "run_date": "2026-11-20",
        }
        for i in range(n)
    ]


@pytest.fixture()
def engine(tmp_path):
    eng = connect(f"sqlite:///{tmp_path / 'wh' / 'warehouse.db'}")
    init_schema(eng)
    return eng


def test_init_is_idempotent(engine) -> None:
    assert init_schema(engine) == []
    assert set(table_counts(engine)) == set(metadata.tables)


def test_loading_twice_duplicates_nothing_and_updates_in_place(engine) -> None:
    load_urls(engine, _url_rows(5), labels=["happy", "sad"])
    rows = _url_rows(5)
    rows[0]["rank"] = 99
    load_urls(engine, rows, labels=["happy", "sad"])
    assert table_counts(engine)["image_url"] == 5
    with engine.connect() as conn:
        assert (
            conn.execute(
                select(image_url.c.rank).where(image_url.c.url_sha256 == f"{0:064x}")
            ).scalar()
            == 99
        )


def test_a_bad_row_mid_batch_writes_nothing(engine) -> None:
    rows = _url_rows(4)
    rows[2]["url"] = None  # required column
    with pytest.raises(WarehouseError, match="lacks required"):
        load_urls(engine, rows)
    assert table_counts(engine)["image_url"] == 0


def test_a_database_error_mid_batch_rolls_back(engine) -> None:
    rows = _url_rows(3)
    rows[1]["rank"] = "not-a-number"  # SQLite accepts it; force a constraint error instead
    rows[2]["url_sha256"] = None
    with pytest.raises(WarehouseError):
        load_urls(engine, rows)
    assert table_counts(engine)["image_url"] == 0


def test_unknown_label_is_refused(engine) -> None:
    with pytest.raises(WarehouseError, match="not in the label set"):
        load_urls(engine, _url_rows(2, label="bored"), labels=["happy", "sad"])


def test_missing_table_gives_a_clear_error(tmp_path) -> None:
    eng = connect(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(WarehouseError, match="warehouse init"):
        load_urls(eng, _url_rows(1))


def test_database_down_gives_a_clear_error() -> None:
    with pytest.raises(WarehouseError, match="cannot connect"):
        connect("postgresql+psycopg://u:secret@127.0.0.1:1/db", connect_timeout_s=2)


def test_emotion_events_upsert_on_camera_window_label(engine) -> None:
    start = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    windows = [
        {"camera_id": "cam", "window_start": start, "label": "happy", "window_seconds": 5,
         "count": 3, "mean_confidence": 0.8, "model_version": 1},
        {"camera_id": "cam", "window_start": start, "label": "sad", "window_seconds": 5,
         "count": 1, "mean_confidence": 0.6, "model_version": 1},
    ]  # fmt: skip
    load_emotion_events(engine, windows)
    load_emotion_events(engine, windows)
    with engine.connect() as conn:
        rows = conn.execute(select(emotion_event.c.label, emotion_event.c.face_count)).all()
    assert sorted(rows) == [("happy", 3), ("sad", 1)]
