"""emotion_hour: emotion_event summed per (camera, UTC hour, label), kept exact on every load.

`load_emotion_events` calls `refresh_hours` in the transaction of its upsert: the rows of
every (camera, hour) the batch touched are deleted and computed again from emotion_event
with one INSERT ... SELECT, so a re-sent window (an idempotent upsert) is never counted
twice and a hot swap's second model version lands in the same hour rows. Migration 6 fills
the table with `rebuild_hours`, the same statement without a filter.

Semantics (identical to what the analytics page computed from emotion_event): `faces` and
`observations` are SUMs (observations NULL when every row's is NULL, as SQL's SUM does);
`tracks` takes `distinct_tracks` once per (camera, window, model version) (it is repeated on
each label row), sums those over the hour, and is repeated on each label row of the
camera-hour; `first_window`/`last_window` are MIN/MAX(window_start). A day is the sum of its
hours, so day buckets from this table equal day buckets from the events.

Concurrency: PostgreSQL and Oracle run in READ COMMITTED, so two loads of the same hour could
each recompute it without the other's rows. `refresh_hours` first locks one row (migration
6's schema_version row, SELECT ... FOR UPDATE), so refreshes queue and each INSERT ...
SELECT starts after the previous load committed. SQLite serialises writers itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from emotionops.warehouse.schema import UtcDateTime, emotion_event, emotion_hour, schema_version

#: The schema version that made emotion_hour; its schema_version row is the refresh lock.
ROLLUP_VERSION = 6
#: (camera, hour range) terms per DELETE / INSERT: SQLite caps an expression's depth at 1000.
RANGES_PER_STATEMENT = 100
HOUR = timedelta(hours=1)


# The UTC time bucket ---------------------------------------------------------------------


class utc_bucket(FunctionElement[datetime]):
    """The start of the UTC hour or day holding a UtcDateTime expression, as a UtcDateTime.

    Subclasses fix the unit, so the unit is part of SQLAlchemy's statement cache key. The
    unit is rendered as a literal, never a bind: PostgreSQL accepts `GROUP BY <expr>` for a
    selected `<expr>` only when both are spelled the same, binds included.
    """

    type = UtcDateTime(key=True)
    inherit_cache = True
    unit = ""
    stored = False  # SQLite: spelled as UtcDateTime writes it (for keys compared to binds)


class utc_hour(utc_bucket):
    inherit_cache = True
    unit = "hour"


class utc_day(utc_bucket):
    inherit_cache = True
    unit = "day"


class utc_hour_key(utc_hour):
    """utc_hour as emotion_hour.hour_start stores it: on SQLite with the '.000000' that
    UtcDateTime writes, so `hour_start >= :bind` compares like text of the same shape."""

    inherit_cache = True
    stored = True


def bucket_expression(column: Any, bucket: str) -> utc_bucket:
    """`utc_hour(column)` or `utc_day(column)`."""
    if bucket not in ("hour", "day"):
        raise ValueError(f"bucket must be 'hour' or 'day', got {bucket!r}")
    return (utc_hour if bucket == "hour" else utc_day)(column)


def _argument(element: FunctionElement[Any]) -> Any:
    (arg,) = element.clauses.clauses
    return arg


@compiles(utc_bucket)
def _bucket_default(element: utc_bucket, compiler: Any, **kw: Any) -> str:
    raise CompileError(
        f"no UTC {element.unit} bucket for the {compiler.dialect.name} dialect: the "
        "warehouse runs on sqlite, postgresql and oracle"
    )


@compiles(utc_bucket, "sqlite")
def _bucket_sqlite(element: utc_bucket, compiler: Any, **kw: Any) -> str:
    # UtcDateTime stores 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC: a prefix is the bucket, far
    # cheaper than strftime's parse of every row.
    arg = compiler.process(_argument(element), **kw)
    fraction = ".000000" if element.stored else ""
    if element.unit == "hour":
        return f"(substr({arg}, 1, 13) || ':00:00{fraction}')"
    return f"(substr({arg}, 1, 10) || ' 00:00:00{fraction}')"


@compiles(utc_bucket, "postgresql")
def _bucket_postgresql(element: utc_bucket, compiler: Any, **kw: Any) -> str:
    # timestamptz -> UTC wall time -> truncated -> timestamptz again (any server version).
    arg = compiler.process(_argument(element), **kw)
    return f"(date_trunc('{element.unit}', {arg} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"


@compiles(utc_bucket, "oracle")
def _bucket_oracle(element: utc_bucket, compiler: Any, **kw: Any) -> str:
    # A key UtcDateTime is a TIMESTAMP holding UTC; WITH TIME ZONE ones go through UTC first.
    arg_clause = _argument(element)
    arg = compiler.process(arg_clause, **kw)
    if isinstance(arg_clause.type, UtcDateTime) and not arg_clause.type.key:
        arg = f"SYS_EXTRACT_UTC({arg})"
    return f"TRUNC({arg}, '{'HH' if element.unit == 'hour' else 'DD'}')"


class utc_zoned(FunctionElement[datetime]):
    """A key UtcDateTime (plain TIMESTAMP holding UTC) as a non-key one: on Oracle
    FROM_TZ(..., 'UTC'), so TIMESTAMP WITH TIME ZONE gets UTC and not the session's zone;
    elsewhere the expression itself (both types are the same there)."""

    type = UtcDateTime()
    inherit_cache = True


@compiles(utc_zoned)
def _zoned_default(element: utc_zoned, compiler: Any, **kw: Any) -> str:
    return compiler.process(_argument(element), **kw)


@compiles(utc_zoned, "oracle")
def _zoned_oracle(element: utc_zoned, compiler: Any, **kw: Any) -> str:
    return f"FROM_TZ(CAST({compiler.process(_argument(element), **kw)} AS TIMESTAMP), 'UTC')"


# The rollup ------------------------------------------------------------------------------


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC (the warehouse's convention)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def hour_of(moment: datetime) -> datetime:
    return as_utc(moment).replace(minute=0, second=0, microsecond=0)


def hour_rows(where: Iterable[ColumnElement[bool]] = ()) -> Select[Any]:
    """emotion_hour's rows computed from the emotion_event rows matching `where`, in
    emotion_hour's column order (see the module docstring for the semantics)."""
    where = list(where)
    e = emotion_event.c
    hour = utc_hour_key(e.window_start)
    labels = (
        select(
            e.camera_id,
            hour.label("hour_start"),
            e.label,
            func.sum(e.face_count).label("faces"),
            func.sum(e.observations).label("observations"),
            func.min(e.window_start).label("first_window"),
            func.max(e.window_start).label("last_window"),
        )
        .where(*where)
        .group_by(e.camera_id, hour, e.label)
        .subquery("hour_labels")
    )
    per_window = (
        select(e.camera_id, e.window_start, func.max(e.distinct_tracks).label("tracks"))
        .where(*where)
        .group_by(e.camera_id, e.window_start, e.model_version)
        .subquery("per_window")
    )
    w = per_window.c
    w_hour = utc_hour_key(w.window_start)
    tracks = (
        select(w.camera_id, w_hour.label("hour_start"), func.sum(w.tracks).label("tracks"))
        .group_by(w.camera_id, w_hour)
        .subquery("hour_tracks")
    )
    lab, tr = labels.c, tracks.c
    return select(
        lab.camera_id,
        lab.hour_start,
        lab.label,
        lab.faces,
        lab.observations,
        tr.tracks,
        utc_zoned(lab.first_window).label("first_window"),
        utc_zoned(lab.last_window).label("last_window"),
    ).select_from(
        labels.join(tracks, and_(lab.camera_id == tr.camera_id, lab.hour_start == tr.hour_start))
    )


def insert_hours(where: Iterable[ColumnElement[bool]] = ()) -> Any:
    """INSERT INTO emotion_hour SELECT `hour_rows(where)` (rowcount kept: SQLAlchemy drops
    it for inserts unless asked)."""
    return (
        emotion_hour.insert()
        .execution_options(preserve_rowcount=True)
        .from_select([c.name for c in emotion_hour.columns], hour_rows(where))
    )


def hour_ranges(touched: Iterable[tuple[str, datetime]]) -> list[tuple[str, datetime, datetime]]:
    """(camera, first hour, end) runs of consecutive touched hours per camera, so a backlog
    of many hours becomes a few range conditions (each one the primary key can serve)."""
    ranges: list[tuple[str, datetime, datetime]] = []
    for camera, hour in sorted({(c, hour_of(h)) for c, h in touched}):
        if ranges and ranges[-1][0] == camera and ranges[-1][2] == hour:
            ranges[-1] = (camera, ranges[-1][1], hour + HOUR)
        else:
            ranges.append((camera, hour, hour + HOUR))
    return ranges


def refresh_statements(touched: Iterable[tuple[str, datetime]]) -> list[Any]:
    """DELETE + INSERT ... SELECT pairs recomputing the emotion_hour rows of every touched
    (camera, hour), at most RANGES_PER_STATEMENT ranges per statement."""
    ranges = hour_ranges(touched)
    e, h = emotion_event.c, emotion_hour.c
    statements = []
    for at in range(0, len(ranges), RANGES_PER_STATEMENT):
        chunk = ranges[at : at + RANGES_PER_STATEMENT]
        in_hours = or_(
            *(and_(h.camera_id == c, h.hour_start >= a, h.hour_start < b) for c, a, b in chunk)
        )
        in_events = or_(
            *(and_(e.camera_id == c, e.window_start >= a, e.window_start < b) for c, a, b in chunk)
        )
        statements += [delete(emotion_hour).where(in_hours), insert_hours([in_events])]
    return statements


def lock_statement() -> Select[Any]:
    """SELECT ... FOR UPDATE of migration 6's schema_version row: queues rollup refreshes
    on PostgreSQL and Oracle (SQLite renders no FOR UPDATE: it serialises writers)."""
    v = schema_version.c
    return select(v.version).where(v.version == ROLLUP_VERSION).with_for_update()


def refresh_hours(conn: Connection, touched: Iterable[tuple[str, datetime]]) -> int:
    """Recompute emotion_hour for the touched (camera, hour)s inside `conn`'s transaction;
    returns the rollup rows written."""
    statements = refresh_statements(touched)
    if not statements:
        return 0
    if conn.dialect.name != "sqlite":
        conn.execute(lock_statement()).all()
    written = 0
    for statement in statements:
        result = conn.execute(statement)
        if statement.is_insert:
            written += max(result.rowcount, 0)
    return written


def rebuild_hours(conn: Connection) -> int:
    """emotion_hour computed again from every emotion_event row (migration 6, and loads
    that bypass `load_emotion_events`, e.g. a bulk COPY); returns the rows written."""
    conn.execute(delete(emotion_hour))
    return max(conn.execute(insert_hours()).rowcount, 0)
