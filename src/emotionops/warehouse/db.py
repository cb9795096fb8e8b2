"""Engines chosen by URL, bounded connects, and the dialect's own upsert statement.

Backends: SQLite (the default file), PostgreSQL (`postgresql+psycopg://`) and Oracle
(`oracle+oracledb://`, thin mode). Upserts use each dialect's native statement: INSERT ... ON
CONFLICT DO UPDATE on SQLite and PostgreSQL, MERGE on Oracle; rows go in batches through
`executemany`, and `write_tables` puts every batch of every table in one transaction, so a
crash or a refused row leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, bindparam, create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.sql.elements import TextClause

from emotionops.errors import EmotionOpsError
from emotionops.warehouse.schema import UtcDateTime

BATCH_SIZE = 1_000
DEFAULT_CONNECT_TIMEOUT_S = 10.0


class WarehouseError(EmotionOpsError):
    """The warehouse is unreachable, missing tables, or refused a load."""


class WarehouseTimeout(WarehouseError):
    """The database accepted the TCP connection but did not answer in time."""


def safe_url(url: str) -> str:
    """The URL with its password hidden (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # ValueError: a non-numeric port
        return "<unparseable URL>"


def first_line(exc: BaseException) -> str:
    """The first line of a driver error, without SQLAlchemy's background link."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return f"{exc.__class__.__name__}: {lines[0] if lines else ''}".strip()


def _bounded(
    connect: Callable[[], Any], timeout_s: float, where: str
) -> Any:  # the DBAPI connection
    """Run a driver's connect in a daemon thread and give up after `timeout_s`.

    python-oracledb (thin) bounds only the TCP handshake: a port that accepts but never
    answers (a hung listener, a wrong service behind a proxy) blocks it forever. The thread
    is left to die with the process; a connection that arrives late is closed.
    """
    box: dict[str, Any] = {}
    lock = threading.Lock()
    done = threading.Event()

    def run() -> None:
        try:
            conn = connect()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc
        else:
            with lock:
                if box.get("abandoned"):
                    with contextlib.suppress(Exception):  # best effort: nobody waits for it
                        conn.close()
                else:
                    box["conn"] = conn
        finally:
            done.set()

    threading.Thread(target=run, name="warehouse-connect", daemon=True).start()
    if not done.wait(timeout_s):
        with lock:
            box["abandoned"] = True
            late = box.pop("conn", None)
        if late is None:
            raise WarehouseTimeout(
                f"no answer from the warehouse at {where} within {timeout_s:g} s: the port "
                "accepts connections but the database does not respond (wrong port, a proxy "
                "or a hung server?)"
            )
        return late
    if "error" in box:
        raise box["error"]
    return box["conn"]


def connect(url: str, connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> Engine:
    """Engine for `url`, checked with one real connection.

    SQLite files get their folder created. A server that is down, refuses the port, or
    accepts but never answers fails within about `connect_timeout_s` with a WarehouseError,
    for every connection the engine ever opens, not only the first.
    """
    where = safe_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a non-numeric port
        raise WarehouseError(
            f"not a database URL: {where} ({first_line(exc)}); check EMOTIONOPS_WAREHOUSE_URL"
        ) from exc
    connect_args: dict[str, Any] = {}
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise WarehouseError(f"cannot use {where}: {exc}") from exc
        connect_args["timeout"] = connect_timeout_s  # waiting for another writer's lock
    elif backend == "postgresql":
        connect_args["connect_timeout"] = max(2, round(connect_timeout_s))
    elif backend == "oracle":
        connect_args["tcp_connect_timeout"] = connect_timeout_s
    else:
        raise WarehouseError(
            f"unsupported warehouse backend {backend!r} in {where}: use sqlite:///..., "
            "postgresql+psycopg://... or oracle+oracledb://..."
        )
    try:
        engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise WarehouseError(f"cannot use {where}: {first_line(exc)}") from exc
    if backend != "sqlite":
        bound = connect_timeout_s + 1.0  # the driver's own, clearer error wins when it can

        @event.listens_for(engine, "do_connect")
        def _connect_with_deadline(dialect: Dialect, _rec: Any, cargs: Any, cparams: Any) -> Any:
            return _bounded(lambda: dialect.connect(*cargs, **cparams), bound, where)

    try:
        with engine.connect():
            pass
    except WarehouseError:
        engine.dispose()
        raise
    except SQLAlchemyError as exc:
        engine.dispose()
        raise WarehouseError(
            f"cannot connect to the warehouse at {where}: {first_line(exc)}"
        ) from exc
    return engine


# Upserts --------------------------------------------------------------------------------------


def _chunks(rows: Sequence[dict[str, Any]], size: int) -> Iterable[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def key_columns(table: Table) -> list[str]:
    return [col.name for col in table.primary_key.columns]


def merge_statement(table: Table, dialect: Dialect) -> TextClause:
    """Oracle's MERGE for one row of `table`, run with executemany.

    Binds are positional names (:p0, :p1...) so that no column name, however it is spelled,
    becomes an invalid bind name; each value is CAST to the column's type so the USING row
    has the target's types even when a value is NULL, and TIMESTAMP WITH TIME ZONE values
    (bound as naive UTC) get their zone explicitly.
    """
    prep = dialect.identifier_preparer
    keys = key_columns(table)
    cols = list(table.columns)
    selects, binds = [], []
    for i, col in enumerate(cols):
        name = f"p{i}"
        binds.append(bindparam(name, type_=col.type))
        impl = col.type.dialect_impl(dialect)
        sql_type = dialect.type_compiler_instance.process(impl)
        expr = f"CAST(:{name} AS {sql_type})"
        if isinstance(col.type, UtcDateTime) and not col.type.key:
            expr = f"FROM_TZ(CAST(:{name} AS TIMESTAMP), 'UTC')"
        selects.append(f"{expr} AS {prep.quote(col.name)}")
    q = {c.name: prep.quote(c.name) for c in cols}
    sql = (
        f"MERGE INTO {prep.format_table(table)} t "
        f"USING (SELECT {', '.join(selects)} FROM dual) s "
        f"ON ({' AND '.join(f't.{q[k]} = s.{q[k]}' for k in keys)})"
    )
    updates = [f"t.{q[c.name]} = s.{q[c.name]}" for c in cols if c.name not in keys]
    if updates:
        sql += f" WHEN MATCHED THEN UPDATE SET {', '.join(updates)}"
    sql += (
        f" WHEN NOT MATCHED THEN INSERT ({', '.join(q[c.name] for c in cols)})"
        f" VALUES ({', '.join(f's.{q[c.name]}' for c in cols)})"
    )
    return text(sql).bindparams(*binds)


def merge_params(table: Table, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows keyed by the positional bind names of `merge_statement`."""
    names = [c.name for c in table.columns]
    return [{f"p{i}": row.get(n) for i, n in enumerate(names)} for row in rows]


def upsert_statement(table: Table, dialect: Dialect) -> Any:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE for SQLite and PostgreSQL."""
    if dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        raise WarehouseError(f"no native upsert for dialect {dialect.name!r}")
    keys = key_columns(table)
    stmt = insert(table)
    updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    if not updates:
        return stmt.on_conflict_do_nothing(index_elements=keys)
    return stmt.on_conflict_do_update(index_elements=keys, set_=updates)


def upsert(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], batch_size: int = BATCH_SIZE
) -> int:
    """Insert or update `rows` keyed on the table's primary key, in batches of `batch_size`
    (one executemany each), inside `conn`'s transaction; returns the number of rows sent."""
    if not rows:
        return 0
    dialect = conn.dialect
    if dialect.name == "oracle":
        stmt = merge_statement(table, dialect)
        for batch in _chunks(rows, batch_size):
            conn.execute(stmt, merge_params(table, batch))
    else:
        stmt = upsert_statement(table, dialect)
        for batch in _chunks(rows, batch_size):
            conn.execute(stmt, list(batch))
    return len(rows)


def check_tables(conn: Connection, tables: Iterable[Table]) -> None:
    """Refuse to load into a table that is missing or lacks columns (an old schema)."""
    insp = inspect(conn)
    for table in tables:
        if not insp.has_table(table.name):
            raise WarehouseError(
                f"table {table.name} is missing: run `emotionops warehouse init` first"
            )
        have = {c["name"].lower() for c in insp.get_columns(table.name)}
        missing = [c.name for c in table.columns if c.name.lower() not in have]
        if missing:
            raise WarehouseError(
                f"table {table.name} lacks columns {missing} (an older schema): run "
                "`emotionops warehouse init` to migrate it"
            )


def write_tables(
    engine: Engine,
    batches: Sequence[tuple[Table, Sequence[dict[str, Any]]]],
    batch_size: int = BATCH_SIZE,
    then: Callable[[Connection], Any] | None = None,
) -> dict[str, int]:
    """Upsert already-checked rows into several tables in ONE transaction.

    Either every row of every table is committed or none is: a refused row in the last batch,
    a lost connection or a killed process leave the warehouse as it was. `then` runs last in
    the same transaction (e.g. the rollup that must follow the rows it summarises).
    """
    counts: dict[str, int] = {}
    try:
        with engine.begin() as conn:
            check_tables(conn, [t for t, _ in batches])
            for table, rows in batches:
                counts[table.name] = counts.get(table.name, 0) + upsert(
                    conn, table, rows, batch_size
                )
            if then is not None:
                then(conn)
    except WarehouseError:
        raise
    except SQLAlchemyError as exc:
        names = ", ".join(dict.fromkeys(t.name for t, _ in batches))
        raise WarehouseError(
            f"loading {names} into {engine.url.render_as_string(hide_password=True)} failed, "
            f"nothing was written: {first_line(exc)}"
        ) from exc
    return counts
