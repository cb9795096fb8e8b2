"""Engines and the dialect-aware upsert every loader uses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, and_, create_engine, inspect, select, tuple_
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from emotionops.errors import EmotionOpsError
from emotionops.warehouse.schema import metadata

BATCH_SIZE = 1_000


class WarehouseError(EmotionOpsError):
    """The warehouse is unreachable, missing tables, or refused a load."""


def connect(url: str, connect_timeout_s: float = 10.0) -> Engine:
    """Engine for `url`; SQLite files get their folder created. Fails fast when the server is down."""
    parsed = make_url(url)
    connect_args: dict[str, Any] = {}
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args["timeout"] = connect_timeout_s
    elif backend == "postgresql":
        connect_args["connect_timeout"] = max(1, int(connect_timeout_s))
    elif backend == "oracle":
        connect_args["tcp_connect_timeout"] = connect_timeout_s
    try:
        engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        raise WarehouseError(
            f"cannot connect to the warehouse at {parsed.render_as_string(hide_password=True)}: "
            f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
        ) from exc
    return engine


def init_schema(engine: Engine) -> list[str]:
    """Create missing tables (idempotent); returns the names created."""
    existing = set(inspect(engine).get_table_names())
    metadata.create_all(engine)
    return [name for name in metadata.tables if name not in existing]


def _chunks(rows: Sequence[dict[str, Any]], size: int) -> Iterable[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> int:
    """Insert or update `rows` keyed on the table's primary key, in batches, inside `conn`'s
    transaction. SQLite and PostgreSQL use ON CONFLICT; other dialects update-then-insert."""
    if not rows:
        return 0
    keys = [col.name for col in table.primary_key.columns]
    dialect = conn.dialect.name
    for batch in _chunks(rows, BATCH_SIZE):
        if dialect in ("sqlite", "postgresql"):
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            stmt = insert(table)
            updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
            conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=updates), batch)
        else:
            _update_then_insert(conn, table, keys, batch)
    return len(rows)


def _update_then_insert(
    conn: Connection, table: Table, keys: list[str], batch: Sequence[dict[str, Any]]
) -> None:
    key_cols = [table.c[k] for k in keys]
    wanted = [tuple(row[k] for k in keys) for row in batch]
    found = {tuple(r) for r in conn.execute(select(*key_cols).where(tuple_(*key_cols).in_(wanted)))}
    fresh = [row for row in batch if tuple(row[k] for k in keys) not in found]
    for row in batch:
        if tuple(row[k] for k in keys) in found:
            cond = and_(*(table.c[k] == row[k] for k in keys))
            conn.execute(table.update().where(cond).values(**row))
    if fresh:
        conn.execute(table.insert(), fresh)
