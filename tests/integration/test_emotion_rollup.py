"""emotion_hour, the hourly rollup of emotion_event, on SQLite and PostgreSQL: after inserts,
re-sends, a hot swap and a backlog it equals an aggregation of the events done here in Python
from scratch; migration 6 fills it on an existing version-5 warehouse; the analytics page
answers the same from it as from the events."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from _analytics import UTC_PLUS_1, seed, window
from emotionops.dashboard.analytics import analytics_data, analytics_queries, rollup_queries
from emotionops.warehouse import connect, init_schema, load_emotion_events, migrate
from emotionops.warehouse.migrations import LATEST, current_version
from emotionops.warehouse.rollup import RANGES_PER_STATEMENT, as_utc
from emotionops.warehouse.schema import emotion_event, emotion_hour, schema_version

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def wh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'wh' / 'warehouse.db'}"
    server = request.getfixturevalue("postgres_server")
    return server.create_database(f"wh_{uuid.uuid4().hex[:10]}")


@pytest.fixture()
def engine(wh_url: str):
    eng = connect(wh_url, connect_timeout_s=5)
    init_schema(eng)
    yield eng
    eng.dispose()


def from_scratch(engine) -> dict[tuple, tuple]:
    """(camera, hour, label) -> (faces, observations, tracks, first, last), from every
    emotion_event row: tracks once per (camera, window, model version), summed per hour."""
    with engine.connect() as conn:
        events = conn.execute(select(emotion_event)).all()
    faces, obs, first, last = defaultdict(int), {}, {}, {}
    window_tracks: dict[tuple, int | None] = {}
    for r in events:
        start = as_utc(r.window_start)
        hour = start.replace(minute=0, second=0, microsecond=0)
        key = (r.camera_id, hour, r.label)
        faces[key] += r.face_count
        if r.observations is not None:
            obs[key] = obs.get(key, 0) + r.observations
        else:
            obs.setdefault(key, None)
        first[key] = min(first.get(key, start), start)
        last[key] = max(last.get(key, start), start)
        w = (r.camera_id, start, r.model_version)
        if r.distinct_tracks is not None:
            window_tracks[w] = max(window_tracks.get(w) or 0, r.distinct_tracks)
        else:
            window_tracks.setdefault(w, None)
    hour_tracks: dict[tuple, int | None] = {}
    for (camera, start, _version), n in window_tracks.items():
        hk = (camera, start.replace(minute=0, second=0, microsecond=0))
        hour_tracks[hk] = hour_tracks.get(hk) if n is None else (hour_tracks.get(hk) or 0) + n
    return {
        k: (faces[k], obs[k], hour_tracks[k[:2]], first[k], last[k]) for k in faces
    }  # fmt: skip


def rollup(engine) -> dict[tuple, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(select(emotion_hour)).all()
    out = {
        (r.camera_id, as_utc(r.hour_start), r.label): (
            r.faces, r.observations, r.tracks, as_utc(r.first_window), as_utc(r.last_window),
        )
        for r in rows
    }  # fmt: skip
    assert len(out) == len(rows)
    return out


def test_the_rollup_follows_inserts_resends_and_a_hot_swap(engine) -> None:
    seed(engine)  # hot swap inside a window, an offset-aware start, two cameras
    expected = from_scratch(engine)
    assert rollup(engine) == expected and len(expected) == 7
    h23 = datetime(2026, 12, 1, 23, tzinfo=UTC)
    assert expected["cam-a", h23, "happy"] == (
        2, 5, 4, datetime(2026, 12, 1, 23, tzinfo=UTC), datetime(2026, 12, 1, 23, 59, 50, tzinfo=UTC),
    )  # fmt: skip
    # the 00:00 hour: tracks 2 (00:00:00) + 2 (00:00:10, model 3) + 2 (00:00:10, model 4)
    assert expected["cam-a", h23 + timedelta(hours=1), "sad"][2] == 6

    # The same batch again: upserts in place, nothing counted twice.
    seed(engine)
    assert rollup(engine) == expected

    # A re-sent window with other figures replaces the old ones in its hour.
    resent = window("cam-a", datetime(2026, 12, 1, 23, 0, 0, tzinfo=UTC), "3", {"happy": (5, 9)}, 5)
    load_emotion_events(engine, resent)
    assert rollup(engine) == from_scratch(engine)
    assert rollup(engine)["cam-a", h23, "happy"][:3] == (6, 11, 8)

    # A hot swap that arrives later: model 4's rows for a window model 3 already sent.
    swap = window("cam-b", datetime(2026, 12, 1, 23, 30, 0, tzinfo=UTC), "5", {"sad": (1, 2)}, 1)
    load_emotion_events(engine, swap)
    got = rollup(engine)
    assert got == from_scratch(engine)
    assert got["cam-b", h23, "surprise"][2] == got["cam-b", h23, "sad"][2] == 5  # 4 + 1

    # Old rows without observations or tracks: NULL stays NULL, as SUM gives it.
    old = window("cam-old", datetime(2026, 1, 5, 8, 0, tzinfo=UTC), None, {"sad": (3, 0)}, 0)
    for row in old:
        row["observations"] = row["distinct_tracks"] = None
    load_emotion_events(engine, old)
    assert rollup(engine)["cam-old", datetime(2026, 1, 5, 8, tzinfo=UTC), "sad"][:3] == (
        3,
        None,
        None,
    )
    assert rollup(engine) == from_scratch(engine)


def test_a_backlog_of_many_hours_in_one_batch(engine) -> None:
    """More separate hours than one statement takes (every other hour: no runs to merge),
    across a UTC+1 day boundary, in one load."""
    base = datetime(2026, 12, 1, 0, 0, 5, tzinfo=UTC_PLUS_1)
    rows = []
    for i in range(2 * RANGES_PER_STATEMENT + 30):
        start = base + timedelta(hours=2 * i, minutes=i % 60)
        rows += window("cam-x", start, "7", {"happy": (1, 3), "neutral": (i % 3 + 1, 5)}, 2)
    load_emotion_events(engine, rows)
    assert len(rollup(engine)) == 2 * (2 * RANGES_PER_STATEMENT + 30)
    assert rollup(engine) == from_scratch(engine)
    load_emotion_events(engine, rows[::3])  # a partial re-send
    assert rollup(engine) == from_scratch(engine)


CASES = [
    {"bucket": "hour"},
    {"bucket": "day"},
    {"bucket": "day", "camera": "cam-a"},
    {"bucket": "hour", "start": datetime(2026, 12, 1, 23, tzinfo=UTC),
     "end": datetime(2026, 12, 2, 0, tzinfo=UTC)},
    {"bucket": "day", "start": datetime(2026, 11, 1, tzinfo=UTC), "end": datetime(2026, 12, 3)},
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=str)
def test_rollup_queries_answer_what_the_event_queries_do(engine, case) -> None:
    seed(engine)
    load_emotion_events(
        engine, window("cam-b", datetime(2026, 12, 2, 5, 12, tzinfo=UTC), "4", {"sad": (2, 3)}, 2)
    )
    camera, bucket = case.get("camera"), case["bucket"]
    args = (camera, case.get("start"), case.get("end"), bucket)
    with engine.connect() as conn:
        for name in ("cameras", "labels", "tracks"):
            events = conn.execute(analytics_queries(*args)[name]).all()
            hours = conn.execute(rollup_queries(*args)[name]).all()
            assert [tuple(r) for r in hours] == [tuple(r) for r in events], name
            assert events


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_page_reads_the_same_from_either_source(engine, case) -> None:
    seed(engine)
    assert analytics_data(engine, **case) == analytics_data(engine, **case, source="events")
    odd = {**case, "start": datetime(2026, 12, 1, 23, 0, 0, 1, tzinfo=UTC)}  # not on the hour
    assert analytics_data(engine, **odd) == analytics_data(engine, **odd, source="events")


def back_to_version_5(eng) -> None:
    with eng.begin() as conn:
        conn.exec_driver_sql("DROP TABLE emotion_hour")
        conn.execute(schema_version.delete().where(schema_version.c.version == 6))


def test_migration_6_fills_the_rollup_of_a_version_5_warehouse(wh_url: str) -> None:
    eng = connect(wh_url)
    migrate(eng)
    seed(eng)
    page = analytics_data(eng, bucket="day")
    expected = from_scratch(eng)
    back_to_version_5(eng)
    assert current_version(eng) == 5
    assert "emotion_hour" not in inspect(eng).get_table_names()

    report = migrate(eng)
    assert (report.applied, report.version, report.created) == ([6], LATEST, ["emotion_hour"])
    assert f"emotion_hour: {len(expected)} rows from emotion_event" in report.changes
    assert rollup(eng) == expected
    assert analytics_data(eng, bucket="day") == page
    assert migrate(eng).applied == []
    eng.dispose()


def test_migration_6_resumes_after_a_crash(wh_url: str) -> None:
    """Oracle commits the CREATE TABLE on its own: a crash after it leaves the table (here
    with a stale row) and version 5; the re-run fills it again from the events."""
    eng = connect(wh_url)
    migrate(eng)
    seed(eng)
    expected = from_scratch(eng)
    back_to_version_5(eng)
    emotion_hour.create(eng)
    with eng.begin() as conn:
        conn.execute(
            emotion_hour.insert().values(
                camera_id="cam-a", hour_start=datetime(2026, 12, 1, 23, tzinfo=UTC),
                label="happy", faces=99, first_window=datetime(2026, 12, 1, 23, tzinfo=UTC),
                last_window=datetime(2026, 12, 1, 23, tzinfo=UTC),
            )
        )  # fmt: skip
    report = migrate(eng)
    assert (report.applied, report.created) == ([6], [])
    assert rollup(eng) == expected
    eng.dispose()


def test_concurrent_loads_of_one_hour_stay_exact(postgres_server) -> None:
    """Two writers loading different windows of the same camera-hour at once on PostgreSQL
    (READ COMMITTED): each refresh waits for the other's commit (the rollup lock), so the
    hour ends up counting both."""
    import threading

    url = postgres_server.create_database(f"wh_{uuid.uuid4().hex[:10]}")
    eng = connect(url, connect_timeout_s=5)
    init_schema(eng)
    hour = datetime(2026, 12, 3, 9, tzinfo=UTC)
    errors: list[BaseException] = []

    def writer(offset: int, label: str) -> None:
        try:
            for i in range(15):
                start = hour + timedelta(seconds=20 * i + offset)
                load_emotion_events(eng, window("cam-a", start, "2", {label: (1, 2)}, 1))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=a) for a in ((0, "happy"), (10, "sad"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = rollup(eng)
    assert got == from_scratch(eng)
    assert got["cam-a", hour, "happy"][:3] == (15, 30, 30) == got["cam-a", hour, "sad"][:3]
    eng.dispose()
