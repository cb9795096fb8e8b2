"""The same warehouse suite on SQLite and on a real PostgreSQL server (Debian's package).

Every load runs twice (same row counts, values updated in place), a load killed after its
first batch reached the server leaves nothing, a refused row in the last batch leaves
nothing, bad input is refused before anything is written, and an old-schema database is
migrated with its rows kept.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    func,
    inspect,
    select,
)

from emotionops.registry import AliasMove
from emotionops.validation import SuiteStats, ValidationReport
from emotionops.warehouse import (
    WarehouseError,
    connect,
    init_schema,
    load_emotion_events,
    load_images,
    load_promotions,
    load_url_outcomes,
    load_urls,
    load_validation_results,
    migrate,
    table_counts,
    write_tables,
)
from emotionops.warehouse.migrations import LATEST, V5_TRAINING_RUN_COLUMNS, current_version
from emotionops.warehouse.report import build_report, render_report
from emotionops.warehouse.schema import (
    DATA_TABLES,
    UNKNOWN_MODEL_VERSION,
    dataset_version,
    emotion_event,
    image,
    image_url,
    model_promotion,
    schema_version,
    training_run,
    url_outcome,
    validation_result,
)

pytestmark = pytest.mark.integration

LABELS = ["happy", "sad", "surprise", "neutral"]


@pytest.fixture(params=["sqlite", "postgresql"])
def wh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty warehouse database on each backend (a fresh PostgreSQL database per test)."""
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


def url_rows(n: int, start: int = 0, label: str = "happy", run_date: str = "2026-11-20"):
    return [
        {
            "url_sha256": f"{i:064x}",
            "url": f"https://photos.example/{i}.jpg",
            "label": label,
            "query": "happy face",
            "engine": "local",
            "rank": i,
            "page_url": "",
            "run_date": run_date,
        }
        for i in range(start, start + n)
    ]


def count(engine, table: Table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def ranks(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(image_url.c.url_sha256, image_url.c.rank)).all())


# Schema and migrations ---------------------------------------------------------------------


def test_init_creates_every_table_then_is_a_no_op(engine) -> None:
    assert set(table_counts(engine)) == {t.name for t in DATA_TABLES}
    assert current_version(engine) == LATEST
    again = migrate(engine)
    assert (again.created, again.applied, again.version) == ([], [], LATEST)
    with engine.connect() as conn:
        versions = conn.execute(select(schema_version.c.version)).scalars().all()
    assert sorted(versions) == list(range(1, LATEST + 1))


def old_schema() -> MetaData:
    """The warehouse as it was before versioning: five tables, training_run without the
    run details, no schema_version."""
    md = MetaData()
    Table(
        "image_url", md,
        Column("url_sha256", String(64), primary_key=True), Column("url", String(2048), nullable=False),
        Column("label", String(32), nullable=False), Column("query", String(256)),
        Column("engine", String(32), nullable=False), Column("rank", Integer),
        Column("page_url", String(2048)), Column("run_date", String(10), nullable=False),
    )  # fmt: skip
    Table(
        "image", md,
        Column("sha256", String(64), primary_key=True), Column("url_sha256", String(64)),
        Column("label", String(32), nullable=False), Column("width", Integer),
        Column("height", Integer), Column("format", String(16)), Column("n_faces", Integer),
        Column("status", String(16), nullable=False), Column("reason", String(256)),
        Column("face_path", String(512)), Column("run_date", String(10)),
    )  # fmt: skip
    Table(
        "dataset_version", md,
        Column("version_id", String(64), primary_key=True), Column("labels", String(512), nullable=False),
        Column("n_images", Integer, nullable=False), Column("n_train", Integer, nullable=False),
        Column("n_val", Integer, nullable=False), Column("n_test", Integer, nullable=False),
        Column("run_date", String(10)),
    )  # fmt: skip
    Table(
        "training_run", md,
        Column("run_id", String(64), primary_key=True), Column("model_name", String(128), nullable=False),
        Column("model_version", String(16)), Column("dataset_version", String(64)),
        Column("test_accuracy", Float), Column("val_accuracy", Float), Column("promoted", Boolean),
        Column("run_date", String(10)),
    )  # fmt: skip
    Table(
        "emotion_event", md,
        Column("camera_id", String(64), primary_key=True),
        Column("window_start", DateTime(timezone=True), primary_key=True),
        Column("label", String(32), primary_key=True), Column("window_seconds", Float, nullable=False),
        Column("face_count", Integer, nullable=False), Column("mean_confidence", Float),
        Column("model_version", String(16)),
    )  # fmt: skip
    return md


def test_an_old_schema_database_is_migrated_and_keeps_its_rows(wh_url: str) -> None:
    eng = connect(wh_url)
    md = old_schema()
    md.create_all(eng)
    start = datetime(2026, 11, 20, 12, 0, 5, tzinfo=UTC)
    old_events = [
        {"camera_id": "cam-1", "window_start": start, "label": "happy", "window_seconds": 5.0,
         "face_count": 3, "mean_confidence": 0.75, "model_version": None},
        {"camera_id": "cam-1", "window_start": start, "label": "sad", "window_seconds": 5.0,
         "face_count": 1, "mean_confidence": 0.5, "model_version": "2"},
    ]  # fmt: skip
    with eng.begin() as conn:
        conn.execute(md.tables["image_url"].insert(), url_rows(3))
        conn.execute(
            md.tables["training_run"].insert(),
            [{"run_id": "r-old", "model_name": "m", "test_accuracy": 0.5, "promoted": True}],
        )
        conn.execute(md.tables["emotion_event"].insert(), old_events)
    assert current_version(eng) == 1

    report = migrate(eng)
    assert report.applied == list(range(2, LATEST + 1)) and report.version == LATEST
    assert {"epoch_metric", "class_metric", "confusion_cell", "model_promotion"} <= set(
        report.created
    )
    assert "training_run.n_train added" in report.changes
    cols = {c["name"] for c in inspect(eng).get_columns("training_run")}
    assert {"n_train", "started_at", "test_macro_f1", "git_commit"} <= cols
    assert count(eng, image_url) == 3
    with eng.connect() as conn:
        old = conn.execute(select(training_run).where(training_run.c.run_id == "r-old")).one()
    assert (old.test_accuracy, old.promoted, old.n_train) == (0.5, True, None)
    # The migrated table takes the new columns.
    write_tables(eng, [(training_run, [{**old._asdict(), "n_train": 40}])])

    # emotion_event: keyed by model version too, its rows kept, NULL versions made explicit.
    assert inspect(eng).get_pk_constraint("emotion_event")["constrained_columns"] == [
        "camera_id", "window_start", "label", "model_version"
    ]  # fmt: skip
    ev = {c["name"]: c for c in inspect(eng).get_columns("emotion_event")}
    assert not ev["model_version"]["nullable"]
    assert {"observations", "distinct_tracks"} <= set(ev)
    with eng.connect() as conn:
        kept = conn.execute(select(emotion_event).order_by(emotion_event.c.label)).all()
    assert [(r.label, r.face_count, r.model_version, r.observations) for r in kept] == [
        ("happy", 3, UNKNOWN_MODEL_VERSION, None), ("sad", 1, "2", None)
    ]  # fmt: skip
    assert kept[0].window_start == start and kept[0].mean_confidence == 0.75
    # A second model's row for the same window and label is a new row, not an overwrite.
    load_emotion_events(
        eng,
        [{"camera_id": "cam-1", "window_start": start, "label": "happy", "window_seconds": 5,
          "count": 2, "mean_confidence": 0.9, "model_version": "3", "observations": 7,
          "distinct_tracks": 4}],
    )  # fmt: skip
    assert count(eng, emotion_event) == 3
    assert migrate(eng).applied == []
    eng.dispose()


def test_the_key_migration_resumes_after_a_crash_half_way(wh_url: str) -> None:
    """Oracle commits each DDL statement: a crash after the old key was dropped (or, on
    SQLite, after the new table was created) must not stop a re-run."""
    eng = connect(wh_url)
    md = old_schema()
    md.create_all(eng)
    start = datetime(2026, 11, 20, 12, tzinfo=UTC)
    row = {"camera_id": "c", "window_start": start, "label": "happy", "window_seconds": 5.0,
           "face_count": 3, "model_version": None}  # fmt: skip
    with eng.begin() as conn:
        conn.execute(md.tables["emotion_event"].insert(), [row])
        if eng.dialect.name == "sqlite":  # the copy a crashed rebuild left behind
            conn.exec_driver_sql("CREATE TABLE emotion_event_v4 (x INTEGER)")
        else:  # the old key dropped, the new one not yet added
            name = inspect(conn).get_pk_constraint("emotion_event")["name"]
            conn.exec_driver_sql(f"ALTER TABLE emotion_event DROP CONSTRAINT {name}")
    assert migrate(eng).applied == list(range(2, LATEST + 1))
    assert inspect(eng).get_pk_constraint("emotion_event")["constrained_columns"][-1] == (
        "model_version"
    )
    assert "emotion_event_v4" not in inspect(eng).get_table_names()
    with eng.connect() as conn:
        (kept,) = conn.execute(select(emotion_event)).all()
    assert (kept.face_count, kept.model_version) == (3, UNKNOWN_MODEL_VERSION)
    eng.dispose()


def test_the_dashboard_migration_upgrades_a_version_4_database(wh_url: str) -> None:
    """Migration 5 on a warehouse made before it: two tables, seven training_run columns,
    image.votes and the emotion_event time index added, rows kept; a re-run changes nothing."""
    eng = connect(wh_url)
    migrate(eng)
    with eng.begin() as conn:  # back to what version 4 made
        for name in ("url_outcome", "validation_result", "emotion_hour"):
            conn.exec_driver_sql(f"DROP TABLE {name}")
        conn.exec_driver_sql("DROP INDEX ix_emotion_event_start")
        for name in V5_TRAINING_RUN_COLUMNS:
            conn.exec_driver_sql(f"ALTER TABLE training_run DROP COLUMN {name}")
        conn.exec_driver_sql("ALTER TABLE image DROP COLUMN votes")
        conn.execute(schema_version.delete().where(schema_version.c.version >= 5))
        conn.exec_driver_sql(
            "INSERT INTO image (sha256, label, status) VALUES ('s4', 'happy', 'accepted')"
        )
        conn.execute(training_run.insert().values(run_id="r4", model_name="m", test_accuracy=0.75))
        conn.execute(
            emotion_event.insert().values(
                camera_id="c", window_start=datetime(2026, 11, 20, 9, tzinfo=UTC),
                label="happy", window_seconds=5.0, face_count=2, model_version="1",
            )
        )  # fmt: skip
    assert current_version(eng) == 4
    assert "ix_emotion_event_start" not in {
        i["name"] for i in inspect(eng).get_indexes("emotion_event")
    }

    report = migrate(eng)
    assert (report.applied, report.version) == ([5, 6], 6)  # 6: the rollup of emotion_event
    assert sorted(report.created) == ["emotion_hour", "url_outcome", "validation_result"]
    assert {f"training_run.{n} added" for n in V5_TRAINING_RUN_COLUMNS} <= set(report.changes)
    assert "image.votes added" in report.changes
    assert "index ix_emotion_event_start created" in report.changes
    indexes = {i["name"]: i["column_names"] for i in inspect(eng).get_indexes("emotion_event")}
    assert indexes["ix_emotion_event_start"] == ["window_start"]
    cols = {c["name"] for c in inspect(eng).get_columns("training_run")}
    assert set(V5_TRAINING_RUN_COLUMNS) <= cols
    with eng.connect() as conn:
        (old,) = conn.execute(select(training_run)).all()
        assert conn.execute(select(func.count()).select_from(emotion_event)).scalar() == 1
    assert (old.run_id, old.test_accuracy, old.test_loss, old.key_params) == (
        "r4",
        0.75,
        None,
        None,
    )
    write_tables(eng, [(training_run, [{**old._asdict(), "test_loss": 0.5, "labels": '["a"]'}])])
    with eng.connect() as conn:  # the image kept, without votes; new images carry them
        assert conn.execute(select(image.c.sha256, image.c.votes)).all() == [("s4", None)]
    load_images(eng, [{"sha256": "s5", "label": "sad", "status": "accepted",
                       "votes": '{"-":1,"sad":9}'}])  # fmt: skip
    with eng.connect() as conn:
        assert conn.execute(select(image.c.votes).where(image.c.sha256 == "s5")).scalar() == (
            '{"-":1,"sad":9}'
        )
    again = migrate(eng)
    assert (again.applied, again.changes, again.created) == ([], [], [])
    eng.dispose()


def test_a_load_into_an_unmigrated_table_names_the_fix(wh_url: str) -> None:
    eng = connect(wh_url)
    old_schema().create_all(eng)
    with pytest.raises(WarehouseError, match=r"lacks columns .*n_train.* warehouse init"):
        write_tables(eng, [(training_run, [{"run_id": "r", "model_name": "m"}])])
    eng.dispose()


def test_a_missing_table_gives_a_clear_error(wh_url: str) -> None:
    eng = connect(wh_url)
    with pytest.raises(
        WarehouseError, match="image_url is missing: run `emotionops warehouse init`"
    ):
        load_urls(eng, url_rows(1))
    eng.dispose()


# Idempotent loads --------------------------------------------------------------------------


def test_loading_urls_twice_duplicates_nothing_and_updates_in_place(engine) -> None:
    rows = url_rows(25)
    assert load_urls(engine, rows, labels=LABELS, batch_size=10) == 25
    rows[0]["rank"] = 99
    rows[24]["label"] = "sad"
    assert load_urls(engine, rows, labels=LABELS, batch_size=10) == 25
    assert count(engine, image_url) == 25
    assert ranks(engine)[f"{0:064x}"] == 99
    with engine.connect() as conn:
        labels = dict(conn.execute(select(image_url.c.url_sha256, image_url.c.label)).all())
        page = conn.execute(select(image_url.c.page_url)).scalars().first()
    assert labels[f"{24:064x}"] == "sad"
    assert page is None  # '' is stored as NULL everywhere (Oracle cannot tell them apart)


def test_images_and_their_dataset_version_load_together_twice(engine) -> None:
    rows = [
        {"sha256": f"{i:064x}", "url_sha256": f"{i:064x}", "label": "happy", "width": "120",
         "height": 100, "format": "JPEG", "n_faces": "1", "status": "accepted", "reason": "",
         "face_path": f"happy/{i}.png", "run_date": "2026-11-20", "phash": "ignored"}
        for i in range(6)
    ] + [
        {"sha256": f"{99:064x}", "url_sha256": "", "label": "bored", "status": "rejected",
         "reason": "label not in label set", "run_date": "2026-11-20"}
    ]  # fmt: skip
    dataset = {"version_id": "dv1", "labels": ",".join(LABELS), "n_images": 6, "n_train": 4,
               "n_val": 1, "n_test": 1, "run_date": "2026-11-20"}  # fmt: skip
    for _ in range(2):
        assert load_images(engine, rows, labels=LABELS, dataset=dataset) == 7
    assert (count(engine, image), count(engine, dataset_version)) == (7, 1)
    with engine.connect() as conn:
        width = conn.execute(select(image.c.width).where(image.c.sha256 == f"{0:064x}")).scalar()
    assert width == 120  # CSV text converted to the column's type

    bad = [dict(rows[0], sha256=f"{7:064x}", label="bored")]  # accepted with an unknown label
    with pytest.raises(WarehouseError, match="'bored', not in the label set"):
        load_images(engine, bad, labels=LABELS, dataset=dict(dataset, version_id="dv2"))
    assert (count(engine, image), count(engine, dataset_version)) == (7, 1)


def test_emotion_events_keep_utc_times_and_upsert_on_camera_window_label(engine) -> None:
    cest = timezone(timedelta(hours=2))
    start = datetime(2026, 11, 20, 14, 0, 5, tzinfo=cest)  # 12:00:05 UTC
    windows = [
        {"camera_id": "cam-1", "window_start": start, "label": "happy", "window_seconds": 5,
         "count": 3, "mean_confidence": 0.8, "model_version": 1},
        {"camera_id": "cam-1", "window_start": start, "label": "sad", "window_seconds": 5,
         "count": 1, "mean_confidence": float("nan"), "model_version": 1},
    ]  # fmt: skip
    load_emotion_events(engine, windows)
    windows[0]["count"] = 4
    load_emotion_events(engine, windows)
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                emotion_event.c.label,
                emotion_event.c.face_count,
                emotion_event.c.window_start,
                emotion_event.c.mean_confidence,
            ).order_by(emotion_event.c.label)
        ).all()
    assert [(r.label, r.face_count) for r in rows] == [("happy", 4), ("sad", 1)]
    assert rows[0].window_start == datetime(2026, 11, 20, 12, 0, 5, tzinfo=UTC)
    assert rows[0].window_start.utcoffset() == timedelta(0)
    assert rows[1].mean_confidence is None  # NaN is stored as NULL on every backend


def test_a_hot_swap_mid_window_keeps_both_models_rows(engine) -> None:
    start = datetime(2026, 11, 20, 12, tzinfo=UTC)
    base = {"camera_id": "cam-1", "window_start": start, "label": "happy", "window_seconds": 5}
    windows = [
        {**base, "count": 3, "mean_confidence": 0.8, "model_version": "1", "observations": 9,
         "distinct_tracks": 4},
        {**base, "count": 2, "mean_confidence": 0.9, "model_version": "2", "observations": 5,
         "distinct_tracks": 2},
        {**base, "count": 1, "mean_confidence": 0.7, "model_version": None},
    ]  # fmt: skip
    for _ in range(2):  # and a re-delivery changes nothing
        assert load_emotion_events(engine, windows) == 3
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                emotion_event.c.model_version,
                emotion_event.c.face_count,
                emotion_event.c.observations,
                emotion_event.c.distinct_tracks,
            ).order_by(emotion_event.c.model_version)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("1", 3, 9, 4), ("2", 2, 5, 2), (UNKNOWN_MODEL_VERSION, 1, None, None)
    ]  # fmt: skip


def test_promotion_audit_rows_are_keyed_naturally(engine) -> None:
    move = AliasMove(
        model_name="emotion-classifier", model_version=2, alias="champion",
        decision="promoted", previous_version=1, reason="test_accuracy 0.9 >= champion v1 0.8",
        decided_at=datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC), metric_name="test_accuracy",
        new_value=0.9, old_value=0.8, run_id="r2", dataset_version="dv1",
    )  # fmt: skip
    load_promotions(engine, [move])
    load_promotions(engine, [move, move.to_json() | {"decided_at": move.decided_at}])
    assert count(engine, model_promotion) == 1
    with engine.connect() as conn:
        row = conn.execute(select(model_promotion)).one()
    assert (row.model_version, row.previous_version, row.decision) == ("2", "1", "promoted")
    assert row.decided_at == move.decided_at


# Nothing half-written ----------------------------------------------------------------------

CRASHING_LOADER = textwrap.dedent(
    """
    import sys
    from sqlalchemy import event
    from emotionops.warehouse import connect, load_urls

    url, n = sys.argv[1], int(sys.argv[2])
    engine = connect(url)

    batches = []

    @event.listens_for(engine, "after_cursor_execute")
    def batch_sent(conn, cursor, statement, params, context, executemany):
        if executemany and "image_url" in statement:
            batches.append(len(params))
            if len(batches) == 2:  # a per-batch commit would have kept batch 1 by now
                print(f"batches sent: {batches}", flush=True)
                sys.stdin.read()  # hold the open transaction until the test kills us

    rows = [
        {"url_sha256": f"{i:064x}", "url": f"https://new.example/{i}.jpg", "label": "sad",
         "engine": "local", "rank": 1000 + i, "run_date": "2026-11-21"}
        for i in range(n)
    ]
    load_urls(engine, rows, batch_size=50)
    print("finished: the test expected to kill this load", flush=True)
    """
)


def test_a_load_killed_mid_batch_leaves_nothing(engine, wh_url: str) -> None:
    load_urls(engine, url_rows(10))
    before = ranks(engine)
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_LOADER, wh_url, "400"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.strip() == "batches sent: [50, 50]", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: 2 of 8 batches are on the server
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert count(engine, image_url) == 10  # none of the 400 new or updated rows
    assert ranks(engine) == before  # the 10 rows it had updated in batch 1 are as they were
    # A retry of the same load then lands completely.
    load_urls(engine, url_rows(400, label="sad"), batch_size=50)
    assert count(engine, image_url) == 400


def test_a_refused_row_in_the_last_batch_leaves_nothing(engine) -> None:
    load_urls(engine, url_rows(5))
    rows = url_rows(120, start=5)
    rows[-1]["url"] = None  # NOT NULL: only the database sees it (no checks in write_tables)
    with pytest.raises(WarehouseError, match="nothing was written"):
        write_tables(engine, [(image_url, rows)], batch_size=50)
    assert count(engine, image_url) == 5


def test_a_refused_table_in_a_multi_table_load_leaves_the_others_untouched(engine) -> None:
    good = url_rows(3)
    bad_run = [{"run_id": "r1", "model_name": None}]
    with pytest.raises(WarehouseError, match="image_url, training_run"):
        write_tables(engine, [(image_url, good), (training_run, bad_run)])
    assert count(engine, image_url) == 0


# Bad input: a clear error before anything is written ----------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"label": "bored"}, r"label 'bored', not in the label set"),
        ({"url": None}, r"lacks required \['url'\]"),
        ({"url": ""}, r"lacks required \['url'\]"),
        ({"rank": "third"}, r"column rank: 'third' is not an integer"),
        ({"rank": 2.5}, r"column rank: 2.5 is not an integer"),
        ({"run_date": 20261120.0}, r"column run_date: 20261120.0 \(float\) is not text"),
        ({"label": "x" * 40}, r"column label: is 40 characters long, the column holds 32"),
    ],
)
def test_bad_rows_are_refused_and_nothing_is_loaded(engine, change, message) -> None:
    rows = url_rows(30)
    rows[17].update(change)
    with pytest.raises(WarehouseError, match=message) as err:
        load_urls(engine, rows, labels=LABELS)
    assert "row 17" in str(err.value)
    assert count(engine, image_url) == 0


def test_duplicate_rows(engine) -> None:
    rows = url_rows(3)
    assert load_urls(engine, [*rows, rows[1]]) == 3  # an exact repeat collapses
    clash = dict(rows[1], url="https://elsewhere.example/1.jpg")
    with pytest.raises(WarehouseError, match=r"repeats key .* with different values"):
        load_urls(engine, [*url_rows(3, start=10), clash, rows[1]])
    assert count(engine, image_url) == 3


def test_an_empty_batch_is_refused(engine) -> None:
    with pytest.raises(WarehouseError, match="image_url: nothing to load"):
        load_urls(engine, [])


def test_a_database_that_goes_down_gives_a_clear_error(wh_url: str, tmp_path: Path) -> None:
    if wh_url.startswith("sqlite"):
        bad = f"sqlite:///{tmp_path / 'missing-dir-file'}/x.db"
        (tmp_path / "missing-dir-file").write_text("a file where a folder should be")
        with pytest.raises(WarehouseError, match=r"cannot use .*missing-dir-file"):
            load_urls(connect(bad), url_rows(1))
        return
    down = wh_url.rsplit("/", 1)[0].rsplit(":", 1)[0] + ":1/nowhere"
    with pytest.raises(WarehouseError, match="cannot connect to the warehouse"):
        connect(down, connect_timeout_s=3)


def test_url_outcomes_and_validation_results_upsert_per_run(engine, tmp_path: Path) -> None:
    h = [f"{i:064x}" for i in range(3)]
    downloads = [
        {"url_sha256": h[0], "label": "happy", "status": "ok", "sha256": "b" * 64,
         "path": "raw/bb/b.jpg", "bytes": "2048", "reason": ""},
        {"url_sha256": h[1], "label": "sad", "status": "rejected", "reason": "not an image"},
    ]  # fmt: skip
    rejected = [{"url_sha256": h[2], "label": "sad", "reason": "denylisted", "rule": "denylist"}]
    for run_date in ("2026-11-20", "2026-11-20", "2026-11-21"):  # a retry, then the next day
        assert load_url_outcomes(engine, run_date, rejected, downloads) == 3
    assert load_url_outcomes(engine, "2026-11-22", [], []) == 0  # imports only: no URLs
    assert count(engine, url_outcome) == 6
    downloads[1] = {**downloads[1], "status": "failed", "reason": "timed out"}
    load_url_outcomes(engine, "2026-11-20", rejected, downloads)  # updated in place
    with engine.connect() as conn:
        rows = {(r.run_date, r.url_sha256): r for r in conn.execute(select(url_outcome))}
    assert len(rows) == 6
    assert (rows[("2026-11-20", h[1])].status, rows[("2026-11-20", h[1])].reason) == (
        "failed", "timed out",
    )  # fmt: skip
    assert rows[("2026-11-21", h[0])].bytes == 2048
    assert rows[("2026-11-20", h[2])].rule == "denylist"

    site = tmp_path / "local_site"
    when = datetime(2026, 11, 20, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))

    def report(ok: bool) -> ValidationReport:
        return ValidationReport(
            "urls", ok,
            (SuiteStats("url_manifest", 6, 6 if ok else 4, site / "validations" / "p.html", 9, when),),
            (), 9, site / "index.html",
        )  # fmt: skip

    assert load_validation_results(engine, [report(True)], "2026-11-20") == 1
    assert load_validation_results(engine, [report(False)], "2026-11-20") == 1  # re-validated
    with engine.connect() as conn:
        (row,) = conn.execute(select(validation_result)).all()
    assert (row.success, row.evaluated, row.failed, row.n_rows) == (False, 6, 2, 9)
    assert row.validated_at == when and row.validated_at.tzinfo is not None
    assert row.docs_path == "validations/p.html"
    counts = build_report(engine)["counts"]
    assert (counts["url_outcome"], counts["validation_result"]) == (6, 1)
    assert "url_outcome 6  validation_result 1" in render_report(build_report(engine))


# Report ------------------------------------------------------------------------------------


def test_report_summarises_every_table(engine) -> None:
    load_urls(engine, url_rows(3) + url_rows(2, start=3, label="sad", run_date="2026-11-21"))
    load_images(
        engine,
        [
            {"sha256": "a" * 64, "label": "happy", "status": "accepted"},
            {"sha256": "b" * 64, "label": "happy", "status": "rejected", "reason": "too small: 4x4 < 48"},
            {"sha256": "c" * 64, "label": "sad", "status": "rejected", "reason": "too small: 9x9 < 48"},
            {"sha256": "d" * 64, "label": "sad", "status": "rejected", "reason": "blurred: sharpness 1 < 20"},
        ],
        dataset={"version_id": "f" * 64, "labels": "happy,sad", "n_images": 1, "n_train": 1,
                 "n_val": 0, "n_test": 0, "run_date": "2026-11-21"},
    )  # fmt: skip
    write_tables(
        engine,
        [(training_run, [{"run_id": "r" * 32, "model_name": "emotion-classifier",
                          "model_version": "3", "test_accuracy": 0.875, "promoted": True,
                          "run_date": "2026-11-21"}])],
    )  # fmt: skip
    load_emotion_events(
        engine,
        [{"camera_id": "door", "window_start": datetime(2026, 11, 21, 9, tzinfo=UTC),
          "label": "happy", "window_seconds": 10, "count": 5, "mean_confidence": 0.7}],
    )  # fmt: skip
    data = build_report(engine)
    assert data["counts"]["image_url"] == 5
    assert data["image_status"] == {"accepted": 1, "rejected": 3}
    assert data["reject_reasons"] == [("too small", 2), ("blurred", 1)]
    assert data["dataset"]["version_id"] == "f" * 64
    text = render_report(data, "test")
    assert "2026-11-21: sad 2" in text and "2026-11-20: happy 3" in text
    assert "rejected     2  too small" in text
    assert "emotion-classifier v3  test accuracy 0.875 champion" in text
    assert "door: 1 windows, 5 faces (happy 5); 2026-11-21 09:00" in text
