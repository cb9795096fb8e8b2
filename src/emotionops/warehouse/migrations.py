"""`emotionops warehouse init`: create missing tables and apply additive migrations in order.

A `schema_version` table records every step applied. A database made before versioning
existed (the five original tables, no `schema_version`) is taken to be at version 1. Each
step checks before it changes anything, so it is safe to re-run after a crash half-way:
Oracle commits each DDL statement on its own, so a step cannot rely on a rollback. Steps
1-3 only add (tables, nullable columns). Step 4 is the one that changes a key: it adds
`model_version` to `emotion_event`'s primary key, so rows without a version get
UNKNOWN_MODEL_VERSION first; it never drops a row (the old key is a subset of the new one).
Step 6 adds the hourly rollup emotion_hour and fills it from emotion_event: it deletes what
a crashed earlier run may have left (Oracle commits the CREATE on its own) and inserts every
row again with one INSERT ... SELECT, in the step's transaction.

Why not Alembic: the warehouse has a handful of additive steps that must run identically on
three dialects from a CLI and from Airflow, without a migrations folder to ship next to the
package; the check-then-add steps below are short, and tested on an old-schema database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine, MetaData, Table, func, inspect, select, update
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateColumn

from emotionops.warehouse import schema as s
from emotionops.warehouse.db import WarehouseError, first_line


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], list[str]]  # returns what it changed, for the report


@dataclass
class MigrationReport:
    created: list[str] = field(default_factory=list)  # tables created
    applied: list[int] = field(default_factory=list)  # versions applied now
    changes: list[str] = field(default_factory=list)  # e.g. "training_run.n_train added"
    version: int = 0  # schema version after the run


def _create_missing(conn: Connection, tables: list[Table]) -> list[str]:
    existing = set(inspect(conn).get_table_names())
    fresh = [t for t in tables if t.name not in existing]
    for table in fresh:
        table.create(conn)
    return [f"table {t.name} created" for t in fresh]


def _add_missing_columns(conn: Connection, table: Table, names: list[str]) -> list[str]:
    """ALTER TABLE t ADD <column definition> for each of `names` the table lacks.

    `ADD col type` (without the COLUMN keyword) is valid on SQLite, PostgreSQL and Oracle.
    """
    have = {c["name"].lower() for c in inspect(conn).get_columns(table.name)}
    prep = conn.dialect.identifier_preparer
    done = []
    for name in names:
        col = table.c[name]
        if col.primary_key or not col.nullable:
            raise WarehouseError(f"migration bug: {table.name}.{name} must be a nullable column")
        if name.lower() in have:
            continue
        ddl = CreateColumn(col).compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {prep.format_table(table)} ADD {ddl}")
        done.append(f"{table.name}.{name} added")
    return done


def _v1_baseline(conn: Connection) -> list[str]:
    return _create_missing(
        conn, [s.image_url, s.image, s.dataset_version, s.training_run, s.emotion_event]
    )


V2_TRAINING_RUN_COLUMNS = [
    "experiment_id",
    "model_type",
    "epochs_run",
    "n_train",
    "n_val",
    "n_test",
    "test_macro_f1",
    "git_commit",
    "started_at",
]


def _v2_training_reports(conn: Connection) -> list[str]:
    changes = _create_missing(
        conn, [s.epoch_metric, s.class_metric, s.confusion_cell, s.model_promotion]
    )
    return changes + _add_missing_columns(conn, s.training_run, V2_TRAINING_RUN_COLUMNS)


def _v3_promotion_lock(conn: Connection) -> list[str]:
    return _create_missing(conn, [s.promotion_lock])


V4_EMOTION_EVENT_COLUMNS = ["observations", "distinct_tracks"]


def _v4_emotion_event_key(conn: Connection) -> list[str]:
    """emotion_event keyed by (camera_id, window_start, label, model_version), NOT NULL
    model_version (NULLs become UNKNOWN_MODEL_VERSION), plus observations, distinct_tracks."""
    table = s.emotion_event
    key = [c.name for c in table.primary_key.columns]
    pk = inspect(conn).get_pk_constraint(table.name)
    have_key = [c.lower() for c in pk.get("constrained_columns") or []]
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table.name}_v4")  # left by a crash
        if have_key == key:  # created by this code already (a fresh database)
            return _add_missing_columns(conn, table, V4_EMOTION_EVENT_COLUMNS)
        return _rebuild_sqlite_table(conn, table)
    changes = _add_missing_columns(conn, table, V4_EMOTION_EVENT_COLUMNS)
    if have_key == key:
        return changes
    filled = conn.execute(unknown_versions_update()).rowcount
    if filled:
        changes.append(
            f"emotion_event: {filled} rows without a model version set to "
            f"{s.UNKNOWN_MODEL_VERSION!r}"
        )
    for statement in primary_key_ddl(conn.dialect, table, pk.get("name") if have_key else None):
        conn.exec_driver_sql(statement)
    changes.append(f"emotion_event primary key ({', '.join(key)})")
    return changes


def unknown_versions_update():
    """UPDATE emotion_event SET model_version = 'unknown' WHERE model_version IS NULL."""
    table = s.emotion_event
    return (
        update(table)
        .where(table.c.model_version.is_(None))
        .values(model_version=s.UNKNOWN_MODEL_VERSION)
    )


def primary_key_ddl(dialect: Dialect, table: Table, old_pk_name: str | None) -> list[str]:
    """Drop the old primary key (when there is one) and add `table`'s, on PostgreSQL or
    Oracle. Adding a primary key makes its columns NOT NULL on both. A crash between the two
    statements leaves no key; the re-run then only adds it."""
    prep = dialect.identifier_preparer
    name = prep.format_table(table)
    statements = []
    if old_pk_name is not None:
        if dialect.name == "oracle":
            statements.append(f"ALTER TABLE {name} DROP PRIMARY KEY")
        else:
            statements.append(f"ALTER TABLE {name} DROP CONSTRAINT {prep.quote(old_pk_name)}")
    cols = ", ".join(prep.quote(c.name) for c in table.primary_key.columns)
    statements.append(f"ALTER TABLE {name} ADD PRIMARY KEY ({cols})")
    return statements


def _rebuild_sqlite_table(conn: Connection, table: Table) -> list[str]:
    """SQLite cannot change a primary key in place: copy into a new table, swap the names.

    The copy, the drop and the rename run in one transaction (the INSERT opens it), so a
    crash leaves the old table as it was; a new table left by a crash before that is dropped
    and made again on the re-run.
    """
    prep = conn.dialect.identifier_preparer
    fresh = table.to_metadata(MetaData(), name=f"{table.name}_v4")
    fresh.create(conn)
    have = {c["name"].lower() for c in inspect(conn).get_columns(table.name)}
    names, values = [], []
    for col in table.columns:
        names.append(prep.quote(col.name))
        if col.name == "model_version":
            values.append(f"COALESCE(model_version, '{s.UNKNOWN_MODEL_VERSION}')")
        else:
            values.append(prep.quote(col.name) if col.name in have else "NULL")
    copied = conn.exec_driver_sql(
        f"INSERT INTO {prep.format_table(fresh)} ({', '.join(names)}) "
        f"SELECT {', '.join(values)} FROM {prep.format_table(table)}"
    ).rowcount
    conn.exec_driver_sql(f"DROP TABLE {prep.format_table(table)}")
    conn.exec_driver_sql(
        f"ALTER TABLE {prep.format_table(fresh)} RENAME TO {prep.format_table(table)}"
    )
    key = ", ".join(c.name for c in table.primary_key.columns)
    added = [f"{table.name}.{n} added" for n in V4_EMOTION_EVENT_COLUMNS if n not in have]
    return [*added, f"emotion_event rebuilt with primary key ({key}), {copied} rows kept"]


V5_TRAINING_RUN_COLUMNS = [
    "labels",
    "train_accuracy",
    "train_loss",
    "val_loss",
    "test_loss",
    "duration_s",
    "key_params",
]


V5_IMAGE_COLUMNS = ["votes"]


def _v5_dashboard(conn: Connection) -> list[str]:
    """url_outcome, validation_result, training_run's dashboard columns, image.votes (FER+
    annotator votes), and an index on emotion_event.window_start."""
    changes = _create_missing(conn, [s.url_outcome, s.validation_result])
    changes += _add_missing_columns(conn, s.training_run, V5_TRAINING_RUN_COLUMNS)
    changes += _add_missing_columns(conn, s.image, V5_IMAGE_COLUMNS)
    have = {i["name"].lower() for i in inspect(conn).get_indexes(s.emotion_event.name)}
    for index in s.emotion_event.indexes:
        if index.name.lower() not in have:
            index.create(conn)
            changes.append(f"index {index.name} created")
    return changes


def _v6_emotion_hour(conn: Connection) -> list[str]:
    """emotion_hour, filled from every emotion_event row (warehouse/rollup.py)."""
    from emotionops.warehouse.rollup import rebuild_hours

    changes = _create_missing(conn, [s.emotion_hour])
    changes.append(f"emotion_hour: {rebuild_hours(conn)} rows from emotion_event")
    return changes


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "image_url, image, dataset_version, training_run, emotion_event", _v1_baseline),
    Migration(
        2,
        "epoch_metric, class_metric, confusion_cell, model_promotion; training_run details",
        _v2_training_reports,
    ),
    Migration(3, "promotion_lock (the registry gate's lease)", _v3_promotion_lock),
    Migration(
        4,
        "emotion_event keyed by model_version too; observations, distinct_tracks",
        _v4_emotion_event_key,
    ),
    Migration(
        5,
        "url_outcome, validation_result; training_run dashboard columns; image.votes; "
        "event time index",
        _v5_dashboard,
    ),
    Migration(
        6, "emotion_hour (hourly emotion rollup), filled from emotion_event", _v6_emotion_hour
    ),
)
LATEST = MIGRATIONS[-1].version


def current_version(engine: Engine) -> int:
    """The schema version recorded in the database (0: empty; 1: pre-versioning tables)."""
    with engine.connect() as conn:
        return _current_version(conn)


def _current_version(conn: Connection) -> int:
    tables = set(inspect(conn).get_table_names())
    if s.schema_version.name in tables:
        recorded = conn.execute(select(func.max(s.schema_version.c.version))).scalar()
        if recorded is not None:
            return int(recorded)
    return 1 if s.image_url.name in tables else 0


def migrate(engine: Engine, now: datetime | None = None) -> MigrationReport:
    """Bring the database to the latest schema version; a no-op when it is there already."""
    report = MigrationReport()
    try:
        with engine.begin() as conn:
            start = _current_version(conn)
            report.created += [c.split()[1] for c in _create_missing(conn, [s.schema_version])]
            if start == 1 and not conn.execute(select(s.schema_version.c.version)).first():
                _record(conn, MIGRATIONS[0], now)  # the pre-versioning schema is version 1
        for step in MIGRATIONS:
            if step.version <= start:
                continue
            with engine.begin() as conn:
                changes = step.apply(conn)
                _record(conn, step, now)
            report.applied.append(step.version)
            report.changes += changes
            report.created += [c.split()[1] for c in changes if c.startswith("table ")]
        report.version = max(start, LATEST)
    except WarehouseError:
        raise
    except SQLAlchemyError as exc:
        raise WarehouseError(
            f"migrating the warehouse at {engine.url.render_as_string(hide_password=True)} "
            f"failed: {first_line(exc)}"
        ) from exc
    if report.version > LATEST:
        raise WarehouseError(
            f"the warehouse is at schema version {report.version}, newer than this code "
            f"({LATEST}): upgrade emotionops"
        )
    return report


def _record(conn: Connection, step: Migration, now: datetime | None) -> None:
    conn.execute(
        s.schema_version.insert().values(
            version=step.version,
            description=step.description,
            applied_at=now or datetime.now(UTC),
        )
    )
