"""The emotion analytics page's data: label counts and tracks per camera and UTC hour/day.

The queries are SQLAlchemy Core selects (`analytics_queries`), so one set runs on SQLite,
PostgreSQL and Oracle; tests compile each with the Oracle dialect. The time bucket is a
custom SQL element (`utc_bucket`) compiled per dialect, always in UTC: SQLite keeps UTC text,
PostgreSQL truncates a timestamptz in UTC (not in the session's zone), Oracle TRUNCs the
TIMESTAMP holding UTC. Bucket starts come back as aware UTC datetimes on every backend and
leave `analytics_data` as ISO-8601 text, so the result is JSON as it is.

Tracks: `distinct_tracks` is repeated on each label row of a (camera, window, model version),
so it is taken once per (camera, window, model version) and then summed. A window with a hot
swap has one row set per model version, and a person in view across the swap is one track of
each model: the sum counts them once per model, exactly as `face_count` does, so the labels'
faces of a bucket add up to its tracks and shares stay within 100 %. Taking the larger of the
two versions instead would undercount windows where different people met each model; the
warehouse holds no track ids to do better, and a swap touches one window per camera.

Where the rows come from: the hourly rollup emotion_hour (warehouse/rollup.py; exact, kept
by `load_emotion_events` in the transaction of each load, with the tracks taken as above). A
day bucket is the sum of its hours; the cameras list (first/last window) is MIN/MAX of the
rollup's first_window/last_window, so it is exact too. A range that does not start and end
on whole UTC hours (the page sends whole days; the API function accepts any instant) reads
emotion_event instead, as does `source="events"`.

Cost (bench/dashboard_queries.py, 1M events = 28,800 rollup rows, Intel Xeon, 2 shared
cores): from the events every request aggregated all its rows (GROUP BY: 30 days of all
cameras 2.4 s on SQLite, 1.6 s on PostgreSQL; the cameras list alone 115-136 ms); from the
rollup 60 / 84 ms for that request, 10-27 ms for a week or a day of hours, 7-9 ms for the
cameras list. The rollup grows with camera-hours, not with events. Its price is on ingest:
a batch of 100 windows x 4 labels takes 24 ms instead of 6 ms on SQLite, 35 instead of 29
on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Select, func, select
from sqlalchemy.exc import SQLAlchemyError

from emotionops.errors import EmotionOpsError
from emotionops.warehouse.db import WarehouseError, first_line
from emotionops.warehouse.migrations import LATEST, current_version
from emotionops.warehouse.rollup import as_utc, utc_bucket, utc_day
from emotionops.warehouse.rollup import bucket_expression as _bucket_expression
from emotionops.warehouse.schema import emotion_event, emotion_hour

if TYPE_CHECKING:
    from emotionops.params import DashboardParams

BUCKETS = ("hour", "day")
SOURCES = ("rollup", "events")
BUCKET_LENGTH = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
#: What the page tells the user to run when the warehouse holds no emotion events.
FILL_HINT = (
    "run `emotionops edge run` on a camera (or send windows to the API's /ingest) to fill it"
)


class AnalyticsError(EmotionOpsError, ValueError):
    """A request the analytics page cannot answer as asked (bad bucket, range or camera)."""


class TooManyRows(AnalyticsError):
    """The request would return more rows than `dashboard.max_rows`."""


# The UTC time bucket (warehouse/rollup.py, which fills emotion_hour with it) --------------


def bucket_expression(column: Any, bucket: str) -> utc_bucket:
    """`utc_hour(column)` or `utc_day(column)`."""
    return _bucket_expression(column, check_bucket(bucket))


# Queries -------------------------------------------------------------------------------


def check_bucket(bucket: str) -> str:
    if bucket not in BUCKETS:
        raise AnalyticsError(f"bucket must be one of {list(BUCKETS)}, got {bucket!r}")
    return bucket


def analytics_queries(
    camera: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    bucket: str = "hour",
    limit: int | None = None,
) -> dict[str, Select[Any]]:
    """Every query the analytics page runs: `cameras` (each camera's first and last window),
    `labels` (faces and observations per camera, bucket, label) and `tracks` (per camera and
    bucket). The camera and the [start, end) range filter in SQL; `limit` caps the last two."""
    e = emotion_event.c
    where = []
    if camera is not None:
        where.append(e.camera_id == camera)
    if start is not None:
        where.append(e.window_start >= as_utc(start))
    if end is not None:
        where.append(e.window_start < as_utc(end))

    b = bucket_expression(e.window_start, bucket)
    labels = (
        select(
            e.camera_id,
            b.label("bucket_start"),
            e.label,
            func.sum(e.face_count).label("faces"),
            func.sum(e.observations).label("observations"),
        )
        .where(*where)
        .group_by(e.camera_id, b, e.label)
        .order_by(e.camera_id, b, e.label)
    )
    per_window = (
        select(
            e.camera_id,
            e.window_start,
            func.max(e.distinct_tracks).label("tracks"),  # the same on each label row
        )
        .where(*where)
        .group_by(e.camera_id, e.window_start, e.model_version)
        .subquery("per_window")
    )
    w = per_window.c
    wb = bucket_expression(w.window_start, bucket)
    tracks = (
        select(w.camera_id, wb.label("bucket_start"), func.sum(w.tracks).label("tracks"))
        .group_by(w.camera_id, wb)
        .order_by(w.camera_id, wb)
    )
    if limit is not None:
        labels, tracks = labels.limit(limit), tracks.limit(limit)
    cameras = (
        select(
            e.camera_id,
            func.min(e.window_start).label("first"),
            func.max(e.window_start).label("last"),
        )
        .group_by(e.camera_id)
        .order_by(e.camera_id)
    )
    return {"cameras": cameras, "labels": labels, "tracks": tracks}


def rollup_queries(
    camera: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    bucket: str = "hour",
    limit: int | None = None,
) -> dict[str, Select[Any]]:
    """`analytics_queries` answered from emotion_hour: the same columns and rows, as long as
    `start` and `end` fall on whole UTC hours (a day is the sum of its hours; tracks are
    repeated on each label row of a camera-hour, so they are taken once per camera-hour)."""
    h = emotion_hour.c
    where = []
    if camera is not None:
        where.append(h.camera_id == camera)
    if start is not None:
        where.append(h.hour_start >= as_utc(start))
    if end is not None:
        where.append(h.hour_start < as_utc(end))

    b = h.hour_start if check_bucket(bucket) == "hour" else utc_day(h.hour_start)
    labels = (
        select(
            h.camera_id,
            b.label("bucket_start"),
            h.label,
            func.sum(h.faces).label("faces"),
            func.sum(h.observations).label("observations"),
        )
        .where(*where)
        .group_by(h.camera_id, b, h.label)
        .order_by(h.camera_id, b, h.label)
    )
    per_hour = (
        select(h.camera_id, h.hour_start, func.max(h.tracks).label("tracks"))
        .where(*where)
        .group_by(h.camera_id, h.hour_start)
        .subquery("per_hour")
    )
    p = per_hour.c
    pb = p.hour_start if bucket == "hour" else utc_day(p.hour_start)
    tracks = (
        select(p.camera_id, pb.label("bucket_start"), func.sum(p.tracks).label("tracks"))
        .group_by(p.camera_id, pb)
        .order_by(p.camera_id, pb)
    )
    if limit is not None:
        labels, tracks = labels.limit(limit), tracks.limit(limit)
    cameras = (
        select(
            h.camera_id,
            func.min(h.first_window).label("first"),
            func.max(h.last_window).label("last"),
        )
        .group_by(h.camera_id)
        .order_by(h.camera_id)
    )
    return {"cameras": cameras, "labels": labels, "tracks": tracks}


def on_the_hour(moment: datetime | None) -> bool:
    """Whether `moment` starts a UTC hour (None, an open end, counts as one)."""
    return moment is None or as_utc(moment) == as_utc(moment).replace(
        minute=0, second=0, microsecond=0
    )


# The page's data --------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else as_utc(moment).isoformat()


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _day_start(moment: datetime) -> datetime:
    return as_utc(moment).replace(hour=0, minute=0, second=0, microsecond=0)


def resolve_range(
    first: datetime | None,
    last: datetime | None,
    start: datetime | None,
    end: datetime | None,
    default_days: int,
) -> tuple[datetime | None, datetime | None]:
    """The [start, end) applied: no end -> the end of the UTC day of the last window (or
    `default_days` after a start later than that); no start -> `default_days` whole UTC days
    before the end. Nothing to anchor on (no data, no bounds): (None, None)."""
    start = None if start is None else as_utc(start)
    end = None if end is None else as_utc(end)
    if end is None and last is not None:
        end = _day_start(last) + timedelta(days=1)
        if start is not None and start >= end:  # a start after the data: an empty span
            end = _day_start(start) + timedelta(days=default_days)
    if start is None and end is not None:
        start = _day_start(end - timedelta(microseconds=1)) - timedelta(days=default_days - 1)
    if start is not None and end is not None and start >= end:
        raise AnalyticsError(
            f"the range is empty: start {_iso(start)} is not before end {_iso(end)}"
        )
    return start, end


def analytics_data(
    engine: Engine,
    camera: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    bucket: str | None = None,
    params: DashboardParams | None = None,
    source: str = "rollup",
) -> dict[str, Any]:
    """The analytics page's data, JSON-ready (see the module docstring for tracks).

    `source` "rollup" reads emotion_hour (falling back to the events for a range that does
    not fall on whole hours); "events" aggregates emotion_event itself, the same answer
    slower (bench/dashboard_queries.py times both).

    `start`/`end` are UTC ([start, end); naive means UTC); None: the last
    `params.default_range_days` UTC days of data. `bucket` None: `params.default_bucket`.
    Raises AnalyticsError for a bad request, TooManyRows past `params.max_rows`, and
    WarehouseError when the warehouse is unreadable or its schema is older than this code.
    """
    from emotionops.params import DashboardParams

    params = params or DashboardParams()
    bucket = check_bucket(bucket or params.default_bucket)
    if source not in SOURCES:
        raise AnalyticsError(f"source must be one of {list(SOURCES)}, got {source!r}")
    version = current_version(engine)
    if version < LATEST:
        raise WarehouseError(
            f"the warehouse schema is at version {version}, this code needs {LATEST}: run "
            "`emotionops warehouse init`"
        )
    try:
        with engine.connect() as conn:
            rollup = source == "rollup"
            read = rollup_queries if rollup else analytics_queries
            cameras = conn.execute(read()["cameras"]).all()
            known = {c.camera_id: c for c in cameras}
            if camera is not None and cameras and camera not in known:
                raise AnalyticsError(
                    f"no camera {camera!r} in the warehouse; it has {sorted(known)}"
                )
            scope = [known[camera]] if camera in known else cameras
            first = min((c.first for c in scope), default=None)
            last = max((c.last for c in scope), default=None)
            applied = resolve_range(first, last, start, end, params.default_range_days)
            rows: dict[str, list[Any]] = {"labels": [], "tracks": []}
            if cameras:
                # The page asks for whole days; another range reads the events themselves.
                if rollup and not all(map(on_the_hour, applied)):
                    read = analytics_queries
                queries = read(camera, *applied, bucket, limit=params.max_rows + 1)
                rows = {k: conn.execute(queries[k]).all() for k in ("labels", "tracks")}
    except SQLAlchemyError as exc:
        raise WarehouseError(f"reading the warehouse failed: {first_line(exc)}") from exc
    if len(rows["labels"]) > params.max_rows:
        span = f"{_iso(applied[0])} .. {_iso(applied[1])}"
        raise TooManyRows(
            f"{bucket} buckets for {camera or 'all cameras'} over {span} give more than "
            f"{params.max_rows:,} rows (dashboard.max_rows): choose a shorter range, one "
            "camera, or day buckets"
        )
    return {
        "empty": not cameras,
        "hint": FILL_HINT if not cameras else None,
        "cameras": [
            {"camera_id": c.camera_id, "first": _iso(c.first), "last": _iso(c.last)}
            for c in cameras
        ],
        "camera": camera,
        "bucket": bucket,
        "range": {
            "first": _iso(first),
            "last": _iso(last),
            "start": _iso(applied[0]),
            "end": _iso(applied[1]),
        },
        "labels": sorted({r.label for r in rows["labels"]}),
        "rows": [
            {
                "camera_id": r.camera_id,
                "bucket_start": _iso(r.bucket_start),
                "label": r.label,
                "faces": int(r.faces),
                "observations": _int(r.observations),
            }
            for r in rows["labels"]
        ],
        "tracks": [
            {
                "camera_id": r.camera_id,
                "bucket_start": _iso(r.bucket_start),
                "tracks": _int(r.tracks),
            }
            for r in rows["tracks"]
        ],
        "max_rows": params.max_rows,
    }
