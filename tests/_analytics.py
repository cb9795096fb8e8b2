"""Seeded emotion windows and the analytics page's exact expected figures, shared by the
SQLite unit tests and the PostgreSQL integration tests (one set of checks per backend)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete

from emotionops.dashboard.analytics import AnalyticsError, TooManyRows, analytics_data
from emotionops.params import DashboardParams
from emotionops.warehouse import WarehouseError, load_emotion_events
from emotionops.warehouse.migrations import LATEST
from emotionops.warehouse.schema import schema_version

UTC_PLUS_1 = timezone(timedelta(hours=1))


def window(camera, start, version, counts, tracks):
    """The rows the edge writes for one (camera, window, model version): label -> (faces,
    observations); `tracks` repeated on each label row."""
    return [
        {
            "camera_id": camera,
            "window_start": start,
            "window_seconds": 10.0,
            "label": label,
            "count": faces,
            "mean_confidence": 0.8,
            "model_version": version,
            "observations": obs,
            "distinct_tracks": tracks,
        }
        for label, (faces, obs) in counts.items()
    ]


def seed(engine) -> None:
    """cam-a: windows either side of 23:00 and of midnight (UTC), one given in UTC+1, and a
    hot swap (model 3 -> 4) inside the 00:00:10 window; cam-b: one window at 23:30."""
    rows = [
        *window("cam-a", datetime(2026, 12, 1, 22, 59, 50, tzinfo=UTC), "3",
                {"happy": (2, 10), "sad": (1, 4)}, 3),
        *window("cam-a", datetime(2026, 12, 1, 23, 0, 0, tzinfo=UTC), "3",
                {"happy": (1, 3)}, 1),
        *window("cam-a", datetime(2026, 12, 1, 23, 59, 50, tzinfo=UTC), "3",
                {"happy": (1, 2), "neutral": (2, 6)}, 3),
        # 2026-12-02 00:00:00 UTC, written with an offset: still the 00:00 UTC bucket
        *window("cam-a", datetime(2026, 12, 2, 1, 0, 0, tzinfo=UTC_PLUS_1), "3",
                {"sad": (2, 8)}, 2),
        *window("cam-a", datetime(2026, 12, 2, 0, 0, 10, tzinfo=UTC), "3",
                {"happy": (1, 2), "sad": (1, 1)}, 2),
        *window("cam-a", datetime(2026, 12, 2, 0, 0, 10, tzinfo=UTC), "4",
                {"happy": (2, 5)}, 2),
        *window("cam-b", datetime(2026, 12, 1, 23, 30, 0, tzinfo=UTC), "4",
                {"surprise": (4, 20)}, 4),
    ]  # fmt: skip
    assert load_emotion_events(engine, rows) == 10


H22, H23 = "2026-12-01T22:00:00+00:00", "2026-12-01T23:00:00+00:00"
H00 = "2026-12-02T00:00:00+00:00"
D1, D2 = "2026-12-01T00:00:00+00:00", "2026-12-02T00:00:00+00:00"


def cells(data):
    """(camera, bucket, label) -> (faces, observations) and (camera, bucket) -> tracks."""
    labels = {
        (r["camera_id"], r["bucket_start"], r["label"]): (r["faces"], r["observations"])
        for r in data["rows"]
    }
    tracks = {(r["camera_id"], r["bucket_start"]): r["tracks"] for r in data["tracks"]}
    return labels, tracks


def check_hour_buckets(engine) -> None:
    data = analytics_data(engine, bucket="hour")
    labels, tracks = cells(data)
    assert labels == {
        ("cam-a", H22, "happy"): (2, 10),
        ("cam-a", H22, "sad"): (1, 4),
        ("cam-a", H23, "happy"): (2, 5),
        ("cam-a", H23, "neutral"): (2, 6),
        ("cam-a", H00, "happy"): (3, 7),  # 1 under model 3, 2 under model 4
        ("cam-a", H00, "sad"): (3, 9),
        ("cam-b", H23, "surprise"): (4, 20),
    }
    # the hot-swap window counts its tracks once per model (2 + 2), not once per label row
    assert tracks == {
        ("cam-a", H22): 3,
        ("cam-a", H23): 4,
        ("cam-a", H00): 6,
        ("cam-b", H23): 4,
    }
    for (camera, bucket), n in tracks.items():  # the labels' faces add up to the tracks
        assert sum(f for (c, b, _), (f, _) in labels.items() if (c, b) == (camera, bucket)) == n
    keys = [(r["camera_id"], r["bucket_start"], r["label"]) for r in data["rows"]]
    assert keys == sorted(keys)
    assert [(r["camera_id"], r["bucket_start"]) for r in data["tracks"]] == sorted(tracks)
    assert data["labels"] == ["happy", "neutral", "sad", "surprise"]
    assert data["empty"] is False and data["hint"] is None and data["bucket"] == "hour"
    assert data["cameras"] == [
        {"camera_id": "cam-a", "first": "2026-12-01T22:59:50+00:00",
         "last": "2026-12-02T00:00:10+00:00"},
        {"camera_id": "cam-b", "first": "2026-12-01T23:30:00+00:00",
         "last": "2026-12-01T23:30:00+00:00"},
    ]  # fmt: skip
    # no range asked: the 7 UTC days ending with the last window's day
    assert data["range"] == {
        "first": "2026-12-01T22:59:50+00:00",
        "last": "2026-12-02T00:00:10+00:00",
        "start": "2026-11-26T00:00:00+00:00",
        "end": "2026-12-03T00:00:00+00:00",
    }


def check_day_buckets(engine) -> None:
    labels, tracks = cells(analytics_data(engine, bucket="day"))
    assert labels == {
        ("cam-a", D1, "happy"): (4, 15),
        ("cam-a", D1, "neutral"): (2, 6),
        ("cam-a", D1, "sad"): (1, 4),
        ("cam-a", D2, "happy"): (3, 7),
        ("cam-a", D2, "sad"): (3, 9),
        ("cam-b", D1, "surprise"): (4, 20),
    }
    assert tracks == {("cam-a", D1): 7, ("cam-a", D2): 6, ("cam-b", D1): 4}


def check_camera_filter(engine) -> None:
    data = analytics_data(engine, camera="cam-b", bucket="day")
    assert cells(data) == ({("cam-b", D1, "surprise"): (4, 20)}, {("cam-b", D1): 4})
    assert data["camera"] == "cam-b"
    assert [c["camera_id"] for c in data["cameras"]] == ["cam-a", "cam-b"]  # the whole filter
    assert data["range"]["first"] == data["range"]["last"] == "2026-12-01T23:30:00+00:00"
    assert data["range"]["end"] == "2026-12-02T00:00:00+00:00"
    with pytest.raises(AnalyticsError, match=r"no camera 'cam-z'.*cam-a"):
        analytics_data(engine, camera="cam-z")


def check_range_edges(engine) -> None:
    """[start, end): a window at `start` is in, a window at `end` is out."""
    start = datetime(2026, 12, 1, 23, 0, 0, tzinfo=UTC)
    end = datetime(2026, 12, 2, 0, 0, 0)  # naive: UTC
    data = analytics_data(engine, start=start, end=end, bucket="hour")
    labels, tracks = cells(data)
    assert labels == {
        ("cam-a", H23, "happy"): (2, 5),
        ("cam-a", H23, "neutral"): (2, 6),
        ("cam-b", H23, "surprise"): (4, 20),
    }
    assert tracks == {("cam-a", H23): 4, ("cam-b", H23): 4}
    assert data["range"]["start"] == H23 and data["range"]["end"] == H00
    labels, _ = cells(
        analytics_data(engine, start=start + timedelta(microseconds=1), end=end, bucket="hour")
    )
    assert ("cam-a", H23, "happy") in labels and labels[("cam-a", H23, "happy")] == (1, 2)
    # an offset-aware start means the same instant: 00:00+01:00 is 23:00 UTC
    same = analytics_data(
        engine, start=datetime(2026, 12, 2, 0, 0, tzinfo=UTC_PLUS_1), end=end, bucket="hour"
    )
    assert cells(same)[0] == labels | {("cam-a", H23, "happy"): (2, 5)}
    with pytest.raises(AnalyticsError, match="range is empty"):
        analytics_data(engine, start=end, end=start)
    # a start after the data, no end: an empty week from there, not an error
    later = analytics_data(engine, start=datetime(2026, 12, 10, 6, tzinfo=UTC))
    assert later["rows"] == later["tracks"] == [] and later["empty"] is False
    assert later["range"]["start"] == "2026-12-10T06:00:00+00:00"
    assert later["range"]["end"] == "2026-12-17T00:00:00+00:00"
    # only an end: the 7 UTC days before it
    week = analytics_data(engine, end=datetime(2026, 12, 1, 23, 30, tzinfo=UTC), bucket="hour")
    assert week["range"]["start"] == "2026-11-25T00:00:00+00:00"
    assert {r["bucket_start"] for r in week["rows"]} == {H22, H23}


def check_row_cap(engine) -> None:
    """7 hour rows: a cap of 7 passes, 6 refuses with what to do instead."""
    hour_cap = DashboardParams(max_rows=7)
    assert len(analytics_data(engine, bucket="hour", params=hour_cap)["rows"]) == 7
    with pytest.raises(TooManyRows, match=r"more than 6 rows.*shorter range.*day buckets"):
        analytics_data(engine, bucket="hour", params=DashboardParams(max_rows=6))
    assert (
        len(analytics_data(engine, bucket="day", params=DashboardParams(max_rows=6))["rows"]) == 6
    )
    with pytest.raises(AnalyticsError, match="bucket must be one of"):
        analytics_data(engine, bucket="week")


def check_empty(engine) -> None:
    data = analytics_data(engine, camera="cam-a")
    assert data["empty"] is True and "emotionops edge run" in data["hint"]
    assert data["cameras"] == data["rows"] == data["tracks"] == data["labels"] == []
    assert data["range"] == {"first": None, "last": None, "start": None, "end": None}


def check_old_schema(engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(schema_version).where(schema_version.c.version == LATEST))
    with pytest.raises(
        WarehouseError, match=rf"version {LATEST - 1}.*needs {LATEST}.*emotionops warehouse init"
    ):
        analytics_data(engine)


SEEDED_CHECKS = [
    check_hour_buckets,
    check_day_buckets,
    check_camera_filter,
    check_range_edges,
    check_row_cap,
]
