"""Analytics page queries on a warehouse with 1,000,000 emotion_event rows (issue 17).

Seeds SQLite and a throw-away PostgreSQL (Debian's binaries, as tests/_postgres.py starts
them; skipped with a line saying so when they are absent) with the same rows, bulk-loaded
(executemany of pre-converted tuples on SQLite, COPY on PostgreSQL), then fills the hourly
rollup emotion_hour the way migration 6 does (`rollup.rebuild_hours`, timed), and times
`emotionops.dashboard.analytics.analytics_data` (every query the page runs for one request)
for three requests, reading the events (`source="events"`, the page before the rollup) and
the rollup, side by side, plus a plain `SELECT COUNT(*)` of each table. Median of --repeat.
Last, the ingest cost: one batch of 100 windows x 4 labels (5 windows per camera, inside
hours that hold data) upserted alone (what `load_emotion_events` did before the rollup) and
by `load_emotion_events` (the upsert plus the refresh of the hours it touched).

The rows: 20 cameras open 10:00-22:00 UTC for 30 days, 10 s windows; a window holds faces
about one time in five (the edge writes no row for an empty window), and each such window
has 1-4 label rows; every camera's champion is hot-swapped (model 3 -> 4) at noon on day 15,
so that window has rows of both models. PostgreSQL is ANALYZEd after the load, as
autovacuum would; SQLite is not (nothing runs ANALYZE on a warehouse file).

    .venv/bin/python bench/dashboard_queries.py [--quick] [--rows N] [--repeat K]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
CAMERAS = 20
DAYS = 30
LABELS = ("happy", "sad", "surprise", "neutral")
FIRST_DAY = datetime(2026, 11, 1, tzinfo=UTC)
OPEN_H, CLOSE_H = 10, 22
WINDOW_S = 10
OCCUPANCY = 0.2
COLUMNS = (
    "camera_id", "window_start", "label", "window_seconds", "face_count", "mean_confidence",
    "model_version", "observations", "distinct_tracks",
)  # fmt: skip


def cpu_name() -> str:
    from emotionops.training.hardware import cpu_model

    return cpu_model()


def make_rows(n_rows: int, seed: int = 0) -> list[tuple[Any, ...]]:
    """About `n_rows` emotion_event rows (see the module docstring; whole windows only, so
    every window keeps tracks == its labels' faces), as tuples in COLUMNS order."""
    import numpy as np

    rng = np.random.default_rng(seed)
    slots = (CLOSE_H - OPEN_H) * 3600 // WINDOW_S
    swap = FIRST_DAY + timedelta(days=DAYS // 2, hours=12)
    # windows per camera-day so that the rows come out at about n_rows (2.5 labels a window)
    per_day = min(slots, max(1, round(n_rows / (CAMERAS * DAYS * 2.5))))
    rows: list[tuple[Any, ...]] = []
    swapped: set[str] = set()
    for day in range(DAYS):
        for cam in range(CAMERAS):
            camera = f"cam-{cam:02d}"
            base = FIRST_DAY + timedelta(days=day, hours=OPEN_H)
            for slot in np.sort(rng.choice(slots, per_day, replace=False)):
                start = base + timedelta(seconds=int(slot) * WINDOW_S)
                versions = ["3"] if start < swap else ["4"]
                if start >= swap and camera not in swapped:  # the window of the hot swap
                    versions = ["3", "4"]
                    swapped.add(camera)
                for version in versions:
                    k = int(rng.integers(1, len(LABELS) + 1))
                    labels = rng.choice(len(LABELS), k, replace=False)
                    faces = rng.integers(1, 4, k)
                    tracks = int(faces.sum())
                    for lab, n in zip(labels, faces, strict=True):
                        n = int(n)
                        rows.append((
                            camera, start, LABELS[lab], float(WINDOW_S), n, 0.8, version,
                            n * int(rng.integers(5, 30)), tracks,
                        ))  # fmt: skip
    return rows


def seed_sqlite(engine: Any, rows: list[tuple[Any, ...]]) -> None:
    """executemany of tuples, window_start converted by the column type's own bind processor
    (so the text is exactly what the loaders write)."""
    from emotionops.warehouse.schema import emotion_event

    to_db = emotion_event.c.window_start.type._cached_bind_processor(engine.dialect)
    at = COLUMNS.index("window_start")
    sql = f"INSERT INTO emotion_event ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 9)})"
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        raw.executemany(sql, ((*r[:at], to_db(r[at]), *r[at + 1 :]) for r in rows))


def seed_postgres(engine: Any, rows: list[tuple[Any, ...]]) -> None:
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        copy_sql = f"COPY emotion_event ({', '.join(COLUMNS)}) FROM STDIN"
        with raw.cursor() as cur, cur.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(row)


def fill_rollup(engine: Any) -> float:
    """emotion_hour from every event, as migration 6 fills it (the bulk seed bypasses the
    loader); returns the seconds it took. PostgreSQL is ANALYZEd afterwards."""
    from emotionops.warehouse.rollup import rebuild_hours

    began = time.perf_counter()
    with engine.begin() as conn:
        rebuild_hours(conn)
    took = time.perf_counter() - began
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE emotion_event")
            conn.exec_driver_sql("ANALYZE emotion_hour")
    return took


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time in ms of `repeat` calls after one warm-up, and the last result."""
    result = call()
    ms = []
    for _ in range(repeat):
        began = time.perf_counter()
        result = call()
        ms.append((time.perf_counter() - began) * 1000)
    return statistics.median(ms), result


def requests(last_day: datetime) -> dict[str, dict[str, Any]]:
    end = last_day + timedelta(days=1)
    return {
        "all cameras, day, full range (30 d)": {"start": FIRST_DAY, "end": end, "bucket": "day"},
        "one camera, hour, 7 days": {
            "camera": "cam-07", "start": end - timedelta(days=7), "end": end, "bucket": "hour",
        },
        "all cameras, hour, 1 day": {"start": last_day, "end": end, "bucket": "hour"},
    }  # fmt: skip


def measure(engine: Any, repeat: int) -> list[tuple[str, float, float, int]]:
    """(what, ms reading the events, ms reading the rollup, rows returned) per request."""
    from sqlalchemy import func, select

    from emotionops.dashboard.analytics import analytics_data, analytics_queries, rollup_queries
    from emotionops.warehouse.schema import emotion_event, emotion_hour

    def count(table: Any) -> Callable[[], int]:
        def call() -> int:
            with engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(table)).scalar_one()

        return call

    def cameras(queries: Callable[[], Any]) -> Callable[[], int]:
        def call() -> int:
            with engine.connect() as conn:
                return len(conn.execute(queries()["cameras"]).all())

        return call

    calls: dict[str, tuple[Callable[[], int], Callable[[], int]]] = {
        "SELECT COUNT(*) of the table read": (count(emotion_event), count(emotion_hour)),
        "cameras + first/last (in every request)": (
            cameras(analytics_queries),
            cameras(rollup_queries),
        ),
    }
    last_day = FIRST_DAY + timedelta(days=DAYS - 1)
    for name, kwargs in requests(last_day).items():
        if analytics_data(engine, **kwargs) != analytics_data(engine, **kwargs, source="events"):
            raise SystemExit(f"{name}: the rollup and the events give different data")
        calls[name] = tuple(  # type: ignore[assignment]
            lambda kw=kwargs, src=source: len(analytics_data(engine, **kw, source=src)["rows"])
            for source in ("events", "rollup")
        )
    out = []
    for name, (events, rollup) in calls.items():
        ms_events, _ = timed(events, repeat)
        ms_rollup, n_rollup = timed(rollup, repeat)
        out.append((name, ms_events, ms_rollup, n_rollup))
    return out


def ingest_batch(hour: datetime) -> list[dict[str, Any]]:
    """100 windows x 4 labels: 5 windows per camera from `hour` on, as EmotionWindow-shaped
    mappings (what /ingest and the edge sink hand to load_emotion_events)."""
    rows = []
    for cam in range(CAMERAS):
        for k in range(100 // CAMERAS):
            start = hour + timedelta(seconds=WINDOW_S * (2 * k + 1) + 3)  # off the seed's grid
            for i, label in enumerate(LABELS):
                rows.append({
                    "camera_id": f"cam-{cam:02d}", "window_start": start, "label": label,
                    "window_seconds": float(WINDOW_S), "count": i + 1, "mean_confidence": 0.8,
                    "model_version": "4", "observations": 5 * (i + 1), "distinct_tracks": 10,
                })  # fmt: skip
    return rows


def measure_ingest(engine: Any, repeat: int) -> tuple[float, float]:
    """ms of one batch: the emotion_event upsert alone (before the rollup) and
    load_emotion_events (upsert + rollup refresh). Each timed run re-sends the batch (an
    upsert in place, as the outbox does), after one first load."""
    from emotionops.warehouse import load_emotion_events, load_table
    from emotionops.warehouse.schema import emotion_event

    rows = ingest_batch(FIRST_DAY + timedelta(days=DAYS - 1, hours=CLOSE_H - 2))
    table_rows = [
        {**{k: v for k, v in r.items() if k != "count"}, "face_count": r["count"]} for r in rows
    ]
    before, _ = timed(lambda: load_table(engine, emotion_event, table_rows), repeat)
    after, _ = timed(lambda: load_emotion_events(engine, rows), repeat)
    return before, after


def verdicts(results: list[tuple[str, str, float, float, int]]) -> list[str]:
    """What the ratios say: how much faster the rollup answers each request, and whether it
    is under the 300 ms the issue asks for."""
    lines = []
    for backend, name, events, rollup, _ in results:
        if name.startswith(("SELECT", "cameras")):
            continue
        fast = "under 300 ms" if rollup < 300 else "OVER 300 ms"
        lines.append(
            f"{backend}, {name}: the rollup is {events / rollup:.1f}x faster than the events, "
            f"{fast}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 2 repeats: a smoke run")
    parser.add_argument("--rows", type=int, help="about this many rows (default 1,000,000)")
    parser.add_argument("--repeat", type=int, help="timed runs per query (default 5)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated")
    args = parser.parse_args(argv)
    n_rows = args.rows or (100_000 if args.quick else 1_000_000)
    repeat = args.repeat or (2 if args.quick else 5)
    sys.path.insert(0, str(ROOT / "tests"))  # _postgres: the test server, no second copy

    from rich.console import Console
    from rich.table import Table

    from emotionops.warehouse import connect, init_schema

    console = Console(width=120)
    began = time.perf_counter()
    rows = make_rows(n_rows)
    console.print(f"{len(rows):,} rows made in {time.perf_counter() - began:.1f} s")
    tmp = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    results: list[tuple[str, str, float, float, int]] = []
    ingest: list[tuple[str, float, float]] = []
    notes: list[str] = []
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for backend in backends:
        server = None
        if backend == "sqlite":
            url = f"sqlite:///{tmp / 'warehouse.db'}"
        elif backend == "postgresql":
            from _postgres import LocalPostgres, find_bin_dir

            bin_dir = find_bin_dir()
            if bin_dir is None:
                notes.append("PostgreSQL skipped: no initdb in /usr/lib/postgresql/*/bin")
                continue
            server = LocalPostgres(bin_dir).start()
            url = server.create_database("bench")
        else:
            raise SystemExit(f"unknown backend {backend!r}: sqlite or postgresql")
        try:
            engine = connect(url)
            init_schema(engine)
            began = time.perf_counter()
            (seed_sqlite if backend == "sqlite" else seed_postgres)(engine, rows)
            loaded = time.perf_counter() - began
            notes.append(
                f"{backend}: {len(rows):,} rows loaded in {loaded:.1f} s; emotion_hour filled "
                f"from them (migration 6's backfill) in {fill_rollup(engine):.1f} s"
            )
            for name, events, rollup, n in measure(engine, repeat):
                results.append((backend, name, events, rollup, n))
            ingest.append((backend, *measure_ingest(engine, repeat)))
            engine.dispose()
        finally:
            if server is not None:
                server.stop()
    shutil.rmtree(tmp, ignore_errors=True)

    table = Table(title=f"analytics_data on {len(rows):,} emotion_event rows, median of {repeat}")
    for column in ("backend", "request", "events ms", "rollup ms", "events / rollup", "rows"):
        table.add_column(column, justify="left" if column in ("backend", "request") else "right")
    for backend, name, events, rollup, n in results:
        table.add_row(
            backend, name, f"{events:.1f}", f"{rollup:.1f}", f"{events / rollup:.1f}", f"{n:,}"
        )
    console.print(table)
    load = Table(title="load_emotion_events, one batch of 100 windows x 4 labels (re-sent)")
    for column in ("backend", "upsert only ms (before)", "upsert + rollup ms (now)", "added ms"):
        load.add_column(column, justify="left" if column == "backend" else "right")
    for backend, before, after in ingest:
        load.add_row(backend, f"{before:.1f}", f"{after:.1f}", f"{after - before:.1f}")
    console.print(load)
    for note in notes + verdicts(results):
        console.print(note)
    console.print(f"CPU: {cpu_name()}; ix_emotion_event_start (window_start) present")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
