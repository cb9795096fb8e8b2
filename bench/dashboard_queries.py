"""Analytics page queries on a warehouse with 1,000,000 emotion_event rows (issue 17).

Seeds SQLite and a throw-away PostgreSQL (Debian's binaries, as tests/_postgres.py starts
them; skipped with a line saying so when they are absent) with the same rows, bulk-loaded
(executemany of pre-converted tuples on SQLite, COPY on PostgreSQL), then times
`emotionops.dashboard.analytics.analytics_data` (every query the page runs for one request)
for three requests, with and without the index ix_emotion_event_start, side by side, plus a
plain `SELECT COUNT(*)` as the floor of a full scan. Median of --repeat runs.

The rows: 20 cameras open 10:00-22:00 UTC for 30 days, 10 s windows; a window holds faces
about one time in five (the edge writes no row for an empty window), and each such window
has 1-4 label rows; every camera's champion is hot-swapped (model 3 -> 4) at noon on day 15,
so that window has rows of both models. PostgreSQL is ANALYZEd after each change, as
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


def set_index(engine: Any, present: bool) -> None:
    from sqlalchemy import inspect

    from emotionops.warehouse.schema import emotion_event

    (index,) = [i for i in emotion_event.indexes if i.name == "ix_emotion_event_start"]
    with engine.begin() as conn:
        have = {i["name"] for i in inspect(conn).get_indexes("emotion_event")}
        if present and index.name not in have:
            index.create(conn)
        elif not present and index.name in have:
            index.drop(conn)
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE emotion_event")


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
    """(what, ms without the index, ms with it, rows returned) per request."""
    from sqlalchemy import func, select

    from emotionops.dashboard.analytics import analytics_data, analytics_queries
    from emotionops.warehouse.schema import emotion_event

    def count() -> int:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(emotion_event)).scalar_one()

    def cameras() -> int:
        with engine.connect() as conn:
            return len(conn.execute(analytics_queries()["cameras"]).all())

    calls: dict[str, Callable[[], int]] = {"SELECT COUNT(*) (reference)": count}
    calls["cameras + first/last (in every request)"] = cameras
    last_day = FIRST_DAY + timedelta(days=DAYS - 1)
    for name, kwargs in requests(last_day).items():
        calls[name] = lambda kw=kwargs: len(analytics_data(engine, **kw)["rows"])
    out: dict[str, list[Any]] = {name: [] for name in calls}
    for present in (False, True):
        set_index(engine, present)
        for name, call in calls.items():
            ms, n = timed(call, repeat)
            out[name] += [ms, n]
    return [(name, v[0], v[2], v[3]) for name, v in out.items()]


def verdicts(results: list[tuple[str, str, float, float, int]]) -> list[str]:
    """What the ratios say: where the index helps (>= 1.2x), hurts (<= 0.8x), or neither,
    and every request over 1 s."""
    lines = []
    for backend, name, off, on, _ in results:
        if name.startswith(("SELECT", "cameras")):
            continue
        ratio = off / on
        effect = "helps" if ratio >= 1.2 else "HURTS" if ratio <= 0.8 else "does not help"
        slow = " -- over 1 s" if on > 1000 else ""
        lines.append(f"{backend}, {name}: the index {effect} ({ratio:.2f}x){slow}")
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
            notes.append(
                f"{backend}: {len(rows):,} rows loaded in {time.perf_counter() - began:.1f} s"
            )
            for name, off, on, n in measure(engine, repeat):
                results.append((backend, name, off, on, n))
            engine.dispose()
        finally:
            if server is not None:
                server.stop()
    shutil.rmtree(tmp, ignore_errors=True)

    table = Table(title=f"analytics_data on {len(rows):,} emotion_event rows, median of {repeat}")
    for column in ("backend", "request", "no index ms", "index ms", "no index / index", "rows"):
        table.add_column(column, justify="left" if column in ("backend", "request") else "right")
    for backend, name, off, on, n in results:
        table.add_row(backend, name, f"{off:.1f}", f"{on:.1f}", f"{off / on:.2f}", f"{n:,}")
    console.print(table)
    for note in notes + verdicts(results):
        console.print(note)
    console.print(f"CPU: {cpu_name()}; index: ix_emotion_event_start (window_start)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
