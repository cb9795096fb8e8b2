"""Oracle without an Oracle server: every DDL and DML statement the warehouse issues is
compiled with SQLAlchemy's Oracle dialect (as for 19c and for 23ai) and checked: identifier
lengths and reserved words, column types, MERGE shape, bind names and bind values."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_mock_engine, func, select
from sqlalchemy.dialects import oracle, postgresql, sqlite
from sqlalchemy.schema import CreateColumn, CreateTable

from emotionops.warehouse import migrations, schema
from emotionops.warehouse.db import merge_params, merge_statement, upsert_statement
from emotionops.warehouse.report import report_queries
from emotionops.warehouse.schema import DATA_TABLES, UtcDateTime, metadata, schema_version

# Oracle's reserved words (SQL Language Reference, "Oracle SQL Reserved Words"): an
# identifier spelled like one must be quoted, and a bind variable cannot be named like one.
ORACLE_RESERVED = set(
    """ACCESS ADD ALL ALTER AND ANY AS ASC AUDIT BETWEEN BY CHAR CHECK CLUSTER COLUMN COMMENT
    COMPRESS CONNECT CREATE CURRENT DATE DECIMAL DEFAULT DELETE DESC DISTINCT DROP ELSE
    EXCLUSIVE EXISTS FILE FLOAT FOR FROM GRANT GROUP HAVING IDENTIFIED IMMEDIATE IN INCREMENT
    INDEX INITIAL INSERT INTEGER INTERSECT INTO IS LEVEL LIKE LOCK LONG MAXEXTENTS MINUS
    MLSLABEL MODE MODIFY NOAUDIT NOCOMPRESS NOT NOWAIT NULL NUMBER OF OFFLINE ON ONLINE OPTION
    OR ORDER PCTFREE PRIOR PUBLIC RAW RENAME RESOURCE REVOKE ROW ROWID ROWNUM ROWS SELECT
    SESSION SET SHARE SIZE SMALLINT START SUCCESSFUL SYNONYM SYSDATE TABLE THEN TO TRIGGER UID
    UNION UNIQUE UPDATE USER VALIDATE VALUES VARCHAR VARCHAR2 VIEW WHENEVER WHERE WITH""".split()  # noqa: SIM905
) | set(oracle.base.RESERVED_WORDS)
# Words that are legal but confusing as column names on Oracle (functions, pseudo-columns).
ORACLE_AVOID = {"TIMESTAMP", "COUNT", "SYSTIMESTAMP", "ROWNUM", "LEVEL", "UID", "USER"}


def oracle_dialect(version: tuple[int, ...]) -> oracle.dialect:
    """The Oracle dialect as `initialize()` leaves it after connecting to `version`."""
    d = oracle.dialect()
    d.server_version_info = version
    d.supports_native_boolean = version >= (23,)
    d._supports_offset_fetch = version >= (12,)
    return d


ORACLE_19, ORACLE_23 = oracle_dialect((19, 0)), oracle_dialect((23, 4))
IDENT = re.compile(r"^[a-z][a-z0-9_]*$")


def ddl_statements(dialect) -> list[str]:
    """Every statement `metadata.create_all` sends (CREATE TABLE, COMMENT ON ...)."""
    sent: list[str] = []
    engine = create_mock_engine(
        f"{dialect.name}://", lambda sql, *a, **k: sent.append(str(sql.compile(dialect=dialect)))
    )
    engine._dialect = dialect  # the version-dependent dialect, as after a real connect
    metadata.create_all(engine, checkfirst=False)
    return sent


@pytest.mark.parametrize("table", list(metadata.sorted_tables), ids=lambda t: t.name)
def test_identifiers_fit_oracle(table) -> None:
    names = [table.name, *(c.name for c in table.columns)]
    names += [c.name for c in table.constraints if c.name] + [i.name for i in table.indexes]
    for name in names:
        assert len(name) <= 30, f"{name}: {len(name)} > 30 characters (Oracle <= 12.1)"
        assert IDENT.match(name), f"{name}: not a plain lower-case identifier"
        assert name.upper() not in ORACLE_RESERVED | ORACLE_AVOID, f"{name} is reserved on Oracle"


@pytest.mark.parametrize("dialect", [ORACLE_19, ORACLE_23, postgresql.dialect()], ids=str)
def test_ddl_quotes_nothing_on_oracle_and_postgresql(dialect) -> None:
    statements = ddl_statements(dialect)
    assert sum(s.lstrip().startswith("CREATE TABLE") for s in statements) == len(metadata.tables)
    for statement in statements:
        assert '"' not in statement, statement


def test_sqlite_quotes_only_the_legacy_query_column() -> None:
    quoted = set(re.findall(r'"(\w+)"', " ".join(ddl_statements(sqlite.dialect()))))
    assert quoted == {"query"}  # a SQLite keyword it accepts quoted or not


def _column_types(dialect, table_name: str) -> dict[str, str]:
    ddl = str(CreateTable(metadata.tables[table_name]).compile(dialect=dialect))
    return {
        m.group(1): m.group(2).strip()
        for m in re.finditer(r"^\s+(\w+) (.+?)(?: NOT NULL)?,?\s*$", ddl, re.M)
        if m.group(1) != "PRIMARY"
    }


def test_oracle_column_types() -> None:
    for table in metadata.sorted_tables:
        types19 = _column_types(ORACLE_19, table.name)
        types23 = _column_types(ORACLE_23, table.name)
        pk = {c.name for c in table.primary_key.columns}
        for col in table.columns:
            t19 = types19[col.name]
            assert t19 != "DATE", f"{table.name}.{col.name}: DATE drops fractions and zones"
            if isinstance(col.type, UtcDateTime):
                want = "TIMESTAMP" if col.name in pk else "TIMESTAMP WITH TIME ZONE"
                assert t19 == want, (table.name, col.name, t19)
                assert col.type.key == (col.name in pk), f"{col.name}: key= must match the PK"
            if col.name in pk:  # ORA-02329: no TIMESTAMP WITH TIME ZONE in a key
                assert "TIME ZONE" not in t19, (table.name, col.name)
            if t19.startswith("VARCHAR2"):
                length = int(re.match(r"VARCHAR2\((\d+) CHAR\)", t19).group(1))
                assert 0 < length <= 4000, (table.name, col.name, t19)
            assert t19 not in ("CLOB", "VARCHAR2"), f"{col.name}: strings need a length"
            if col.type.python_type is bool:
                assert (t19, types23[col.name]) == ("SMALLINT", "BOOLEAN")


def test_migration_steps_compile_for_oracle() -> None:
    table = metadata.tables["training_run"]
    for name in migrations.V2_TRAINING_RUN_COLUMNS:
        col = table.c[name]
        assert col.nullable and not col.primary_key  # ADD of a NOT NULL column fails on rows
        ddl = str(CreateColumn(col).compile(dialect=ORACLE_19))
        assert ddl.startswith(f"{name} ") and '"' not in ddl and "NOT NULL" not in ddl
    started = str(CreateColumn(table.c.started_at).compile(dialect=ORACLE_19))
    assert started == "started_at TIMESTAMP WITH TIME ZONE"
    insert = str(schema_version.insert().compile(dialect=ORACLE_19))
    assert insert.startswith("INSERT INTO schema_version (version, description, applied_at)")


def _merge_sql(table, dialect=ORACLE_19) -> str:
    return str(merge_statement(table, dialect).compile(dialect=dialect))


@pytest.mark.parametrize("table", DATA_TABLES, ids=lambda t: t.name)
def test_merge_statement_for_every_table(table) -> None:
    sql = _merge_sql(table)
    keys = [c.name for c in table.primary_key.columns]
    cols = [c.name for c in table.columns]
    m = re.fullmatch(
        rf"MERGE INTO {table.name} t USING \(SELECT (?P<select>.+) FROM dual\) s "
        r"ON \((?P<on>.+?)\)"
        r"(?: WHEN MATCHED THEN UPDATE SET (?P<set>.+?))?"
        r" WHEN NOT MATCHED THEN INSERT \((?P<ins>.+?)\) VALUES \((?P<vals>.+)\)",
        sql,
    )
    assert m, sql
    assert m["on"] == " AND ".join(f"t.{k} = s.{k}" for k in keys)
    assert m["ins"] == ", ".join(cols)
    assert m["vals"] == ", ".join(f"s.{c}" for c in cols)
    updated = [p.split(" = ")[0] for p in (m["set"] or "").split(", ") if p]
    # ORA-38104: a column in the ON clause cannot be updated; every other column is.
    assert updated == [f"t.{c}" for c in cols if c not in keys]
    selects = re.split(r", (?=CAST|FROM_TZ)", m["select"])
    assert len(selects) == len(cols)
    for i, (expr, col) in enumerate(zip(selects, table.columns, strict=True)):
        assert expr.endswith(f" AS {col.name}"), expr
        assert f":p{i}" in expr, expr
        if isinstance(col.type, UtcDateTime) and not col.type.key:
            assert expr.startswith(f"FROM_TZ(CAST(:p{i} AS TIMESTAMP), 'UTC')"), expr
        else:
            assert expr.startswith(f"CAST(:p{i} AS "), expr
    binds = re.findall(r":(\w+)", sql)
    assert binds == [f"p{i}" for i in range(len(cols))]
    assert all(len(b) <= 30 and b.upper() not in ORACLE_RESERVED for b in binds)
    assert '"' not in sql and ";" not in sql


def test_merge_binds_values_the_way_oracle_needs_them() -> None:
    table = metadata.tables["emotion_event"]
    cest = timezone(timedelta(hours=2))
    row = {"camera_id": "c", "window_start": datetime(2026, 1, 1, 14, 0, tzinfo=cest),
           "label": "happy", "window_seconds": 5.0, "face_count": 2,
           "mean_confidence": 0.5, "model_version": "3", "observations": 4,
           "distinct_tracks": 2}  # fmt: skip
    params = merge_params(table, [row])[0]
    assert params["p0"] == "c" and params["p3"] == 5.0
    assert (params["p6"], params["p7"], params["p8"]) == ("3", 4, 2)
    proc = table.c.window_start.type.dialect_impl(ORACLE_19).bind_processor(ORACLE_19)
    assert proc(params["p1"]) == datetime(2026, 1, 1, 12, 0)  # naive UTC: oracledb drops zones
    run = metadata.tables["training_run"]
    bool_proc = run.c.promoted.type.dialect_impl(ORACLE_19).bind_processor(ORACLE_19)
    assert bool_proc(True) == 1  # SMALLINT before 23ai
    stamp = run.c.started_at.type.dialect_impl(ORACLE_19).bind_processor(ORACLE_19)
    assert stamp(datetime(2026, 1, 1, 12, tzinfo=UTC)) == datetime(2026, 1, 1, 12)
    assert "FROM_TZ(CAST(:p16 AS TIMESTAMP), 'UTC') AS started_at" in _merge_sql(run)


def test_upsert_is_on_conflict_on_sqlite_and_postgresql() -> None:
    table = metadata.tables["image_url"]
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        sql = str(upsert_statement(table, dialect).compile(dialect=dialect))
        assert "ON CONFLICT (url_sha256) DO UPDATE SET" in sql
        assert "url_sha256 = excluded.url_sha256" not in sql


@pytest.mark.parametrize("name", list(report_queries()), ids=str)
def test_report_queries_compile_for_oracle(name) -> None:
    query = report_queries()[name]
    sql = str(query.compile(dialect=ORACLE_19))
    assert '"' not in sql and " LIMIT " not in sql, sql
    if query._limit_clause is not None:
        assert "FETCH FIRST" in sql, sql
    old = oracle_dialect((11, 2))  # before 12c: ROWNUM instead of FETCH FIRST
    assert "ROWNUM" in str(query.compile(dialect=old)) or query._limit_clause is None


def test_count_queries_compile_for_oracle() -> None:
    for table in DATA_TABLES:
        sql = str(select(func.count()).select_from(table).compile(dialect=ORACLE_19))
        assert sql == f"SELECT count(*) AS count_1 \nFROM {table.name}"


def test_the_key_migration_compiles_for_oracle() -> None:
    """Step 4 on Oracle: the new columns, the UPDATE of unknown versions, the key swap."""
    table = metadata.tables["emotion_event"]
    for name in migrations.V4_EMOTION_EVENT_COLUMNS:
        col = table.c[name]
        assert col.nullable and not col.primary_key
        assert str(CreateColumn(col).compile(dialect=ORACLE_19)) == f"{name} INTEGER"
    fill = str(migrations.unknown_versions_update().compile(dialect=ORACLE_19))
    assert fill == (
        "UPDATE emotion_event SET model_version=:model_version WHERE emotion_event.model_version "
        "IS NULL"
    )
    assert migrations.primary_key_ddl(ORACLE_19, table, "sys_c0012345") == [
        "ALTER TABLE emotion_event DROP PRIMARY KEY",
        "ALTER TABLE emotion_event ADD PRIMARY KEY (camera_id, window_start, label, model_version)",
    ]
    # The key's timestamp stays plain (ORA-02329) and the version is a NOT NULL VARCHAR2.
    ddl = str(CreateTable(table).compile(dialect=ORACLE_19))
    assert "window_start TIMESTAMP NOT NULL" in ddl
    assert "model_version VARCHAR2(16 CHAR) NOT NULL" in ddl
    assert "PRIMARY KEY (camera_id, window_start, label, model_version)" in ddl
    # UNKNOWN_MODEL_VERSION is not '', which Oracle would store as NULL in a NOT NULL key.
    assert schema.UNKNOWN_MODEL_VERSION and len(schema.UNKNOWN_MODEL_VERSION) <= 16
    pg = migrations.primary_key_ddl(postgresql.dialect(), table, "emotion_event_pkey")
    assert pg[0] == "ALTER TABLE emotion_event DROP CONSTRAINT emotion_event_pkey"


def test_the_dashboard_migration_compiles_for_oracle() -> None:
    """Step 5 on Oracle: nullable training_run columns, the two tables, the time index."""
    from sqlalchemy.schema import CreateIndex

    table = metadata.tables["training_run"]
    for name in migrations.V5_TRAINING_RUN_COLUMNS:
        col = table.c[name]
        assert col.nullable and not col.primary_key
        ddl = str(CreateColumn(col).compile(dialect=ORACLE_19))
        assert ddl.startswith(f"{name} ") and '"' not in ddl and "NOT NULL" not in ddl
    assert str(CreateColumn(table.c.key_params).compile(dialect=ORACLE_19)) == (
        "key_params VARCHAR2(2000 CHAR)"
    )
    (index,) = metadata.tables["emotion_event"].indexes
    assert str(CreateIndex(index).compile(dialect=ORACLE_19)) == (
        "CREATE INDEX ix_emotion_event_start ON emotion_event (window_start)"
    )
    outcome = str(CreateTable(metadata.tables["url_outcome"]).compile(dialect=ORACLE_19))
    assert "PRIMARY KEY (run_date, url_sha256)" in outcome and "bytes INTEGER" in outcome
    result = str(CreateTable(metadata.tables["validation_result"]).compile(dialect=ORACLE_19))
    assert "validated_at TIMESTAMP WITH TIME ZONE NOT NULL" in result
    assert "PRIMARY KEY (run_date, suite)" in result


def test_the_rollup_statements_compile_for_oracle() -> None:
    """emotion_hour (migration 6) and what keeps it: the table, the DELETE + INSERT ...
    SELECT of the touched hours, the refresh lock, and the analytics page's rollup reads."""
    from datetime import UTC, datetime

    from emotionops.dashboard.analytics import rollup_queries
    from emotionops.warehouse import rollup

    ddl = str(CreateTable(metadata.tables["emotion_hour"]).compile(dialect=ORACLE_19))
    assert "PRIMARY KEY (camera_id, hour_start, label)" in ddl and '"' not in ddl
    assert "hour_start TIMESTAMP NOT NULL" in ddl
    assert "first_window TIMESTAMP WITH TIME ZONE NOT NULL" in ddl
    hour = datetime(2026, 12, 1, 23, tzinfo=UTC)
    touched = [("cam-a", hour), ("cam-a", hour.replace(minute=30)), ("cam-b", hour)]
    delete, insert = (str(s.compile(dialect=ORACLE_19)) for s in rollup.refresh_statements(touched))
    assert delete.startswith("DELETE FROM emotion_hour WHERE emotion_hour.camera_id = ")
    assert delete.count("emotion_hour.hour_start >= ") == 2  # one range per camera
    assert insert.startswith(
        "INSERT INTO emotion_hour (camera_id, hour_start, label, faces, observations, "
        "tracks, first_window, last_window) SELECT"
    )
    assert "TRUNC(emotion_event.window_start, 'HH')" in insert
    assert "FROM_TZ(CAST(hour_labels.first_window AS TIMESTAMP), 'UTC')" in insert
    assert " AS hour_labels JOIN " not in insert and '"' not in insert  # Oracle: no AS
    assert insert.count("emotion_event.window_start >= ") == 4  # 2 ranges, 2 subqueries
    lock = str(rollup.lock_statement().compile(dialect=ORACLE_19))
    assert lock.endswith("FOR UPDATE") and "schema_version" in lock
    full = str(rollup.insert_hours().compile(dialect=ORACLE_19))
    assert "WHERE" not in full
    for bucket in ("hour", "day"):
        for name, query in rollup_queries("cam-a", hour, hour, bucket, limit=101).items():
            sql = str(query.compile(dialect=ORACLE_19))
            assert '"' not in sql and " LIMIT " not in sql and "emotion_event" not in sql, sql
            if name != "cameras":
                assert "FETCH FIRST" in sql
                assert ("TRUNC(" in sql) == (bucket == "day"), sql
