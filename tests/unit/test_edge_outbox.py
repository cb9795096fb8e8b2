"""The edge outbox on real SQLite files, with real sinks: the warehouse (a SQLite file another
writer locks, then releases) and the ingest API (a local HTTP server stopped and started
again on its port, with the token and data refusals of the /ingest contract)."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from emotionops.edge.outbox import (
    MAX_LENGTHS,
    InvalidWindow,
    Outbox,
    OutboxCorrupt,
    OutboxError,
    SinkRejected,
    SinkUnavailable,
    backoff_delay,
    default_outbox_path,
    open_outbox,
    window_row,
)
from emotionops.edge.report import EmotionWindow
from emotionops.edge.sinks import HttpSink, WarehouseSink, make_sink
from emotionops.params import OutboxParams
from emotionops.settings import Settings, SettingsError
from emotionops.warehouse import connect, init_schema
from emotionops.warehouse.schema import UNKNOWN_MODEL_VERSION, emotion_event

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
FAST = OutboxParams(
    windows_per_send=3, backoff_s=0.02, backoff_max_s=0.1, idle_poll_s=0.05, send_timeout_s=2,
    stop_timeout_s=2,
)  # fmt: skip
WAIT_S = 20  # upper bound for a condition in a test; normally met in milliseconds


def window(i: int = 0, label: str = "happy", version: str | None = "1", count: int = 3):
    return EmotionWindow(
        camera_id="cam-1", window_start=T0 + timedelta(seconds=5 * i), window_seconds=5.0,
        label=label, count=count, mean_confidence=0.5 + i / 100, model_version=version,
        observations=count * 4, distinct_tracks=count + 1,
    )  # fmt: skip


def key(row: dict) -> tuple:
    return (row["camera_id"], row["window_start"], row["label"], row["model_version"])


@pytest.fixture()
def outbox(tmp_path: Path):
    with open_outbox(default_outbox_path(tmp_path), FAST) as box:
        yield box


# Rows ---------------------------------------------------------------------------------------


def test_rows_are_json_with_utc_iso_times_and_the_warehouse_lengths() -> None:
    cest = timezone_plus(2)
    row = window_row(
        {"camera_id": "c", "window_start": datetime(2026, 11, 20, 14, 0, 5, tzinfo=cest),
         "window_seconds": 5, "label": "sad", "count": 2, "mean_confidence": float("nan"),
         "model_version": 7}
    )  # fmt: skip
    assert row == {
        "camera_id": "c", "window_start": "2026-11-20T12:00:05.000000+00:00",
        "window_seconds": 5.0, "label": "sad", "count": 2, "mean_confidence": None,
        "model_version": "7", "observations": 0, "distinct_tracks": 0,
    }  # fmt: skip
    assert json.loads(json.dumps(row, allow_nan=False)) == row
    assert window_row(window(version=""))["model_version"] is None
    for name, length in MAX_LENGTHS.items():
        assert emotion_event.c[name].type.length == length


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"count": -1}, "count: -1 is not a count"),
        ({"count": 2.5}, "count: 2.5 is not a count"),
        ({"label": ""}, "label is empty"),
        ({"camera_id": "c" * 65}, "65 characters, the warehouse holds 64"),
        ({"window_seconds": 0}, "not a positive number"),
        ({"window_start": "yesterday"}, "not ISO-8601"),
        ({"mean_confidence": "high"}, "mean_confidence: 'high' is not a number"),
    ],
)
def test_a_bad_row_is_refused_before_anything_is_queued(outbox, change, message) -> None:
    bad = {**window_row(window(1)), **change}
    with pytest.raises(InvalidWindow, match=message):
        outbox.enqueue([window(0), bad])
    assert outbox.depth() == 0  # all or nothing


# Idempotent key -----------------------------------------------------------------------------


def test_a_duplicate_enqueue_stays_one_row(outbox) -> None:
    assert outbox.enqueue([window(0), window(1)]) == 2
    assert outbox.enqueue([window(0)]) == 0  # a retried call: nothing changes
    (first, second) = outbox.pending(10)
    assert outbox.depth() == 2 and first.revision == 0
    # A re-emitted window (a recount of the same window) replaces the counts in place.
    assert outbox.enqueue([window(0, count=5)]) == 1
    rows = outbox.pending(10)
    assert [p.seq for p in rows] == [first.seq, second.seq]  # keeps its place in line
    assert (rows[0].row["count"], rows[0].revision) == (5, 1)
    # An unknown version is one key too (NULLs would not collide in a UNIQUE index).
    outbox.enqueue([window(2, version=None)])
    outbox.enqueue([window(2, version=None)])
    assert outbox.depth() == 3


def test_a_row_changed_while_its_batch_was_in_flight_is_sent_again(outbox) -> None:
    outbox.enqueue([window(0)])
    in_flight = outbox.pending(10)
    outbox.enqueue([window(0, count=9)])  # the window re-emitted during the send
    assert outbox.confirm(in_flight) == 0
    (again,) = outbox.pending(10)
    assert again.row["count"] == 9


def test_a_hot_swap_mid_window_keeps_both_models_rows_in_the_warehouse(outbox, tmp_path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'wh.db'}")
    init_schema(engine)
    outbox.enqueue([window(0, version="1", count=3), window(0, version="2", count=2)])
    outbox.enqueue([window(0, version=None, count=1)])
    assert outbox.depth() == 3
    assert outbox.sender(WarehouseSink(engine)).flush(WAIT_S) == 3
    with engine.connect() as conn:
        got = conn.execute(
            select(emotion_event.c.model_version, emotion_event.c.face_count,
                   emotion_event.c.observations, emotion_event.c.distinct_tracks)
            .order_by(emotion_event.c.model_version)
        ).all()  # fmt: skip
    assert [tuple(r) for r in got] == [
        ("1", 3, 12, 4), ("2", 2, 8, 3), (UNKNOWN_MODEL_VERSION, 1, 4, 2)
    ]  # fmt: skip
    assert outbox.depth() == 0
    engine.dispose()


# Corrupt or foreign files -------------------------------------------------------------------


def test_a_garbage_file_is_moved_aside_intact_and_the_next_open_starts_afresh(tmp_path) -> None:
    path = tmp_path / "outbox.sqlite3"
    garbage = b"not a database, but maybe someone's rows\n" * 200
    path.write_bytes(garbage)
    with pytest.raises(OutboxCorrupt, match=r"is corrupt .*moved it aside to .*NOT delivered") as e:
        Outbox(path)
    assert e.value.kept.read_bytes() == garbage
    assert e.value.kept.name.startswith("outbox.sqlite3.corrupt-") and not path.exists()
    with Outbox(path) as fresh:
        assert fresh.enqueue([window(0)]) == 1


def test_a_damaged_page_in_a_real_outbox_is_detected(tmp_path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as box:
        box.enqueue([window(i) for i in range(400)])  # several pages of rows
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row in the main file
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='outbox'").fetchone()
    data = bytearray(path.read_bytes())
    assert len(data) > 4 * size
    start = (root - 1) * size  # the outbox table's root page: a disk error scribbled on it
    data[start : start + size] = b"\xff" * size
    path.write_bytes(bytes(data))
    with pytest.raises(OutboxCorrupt) as e:
        Outbox(path)
    assert e.value.kept.read_bytes() == bytes(data)  # kept for recovery, byte for byte


def test_a_database_that_is_not_an_outbox_is_left_alone(tmp_path) -> None:
    path = tmp_path / "warehouse.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE image (sha256 TEXT)")
    with pytest.raises(OutboxError, match=r"not an edge outbox .*tables: image"):
        Outbox(path)
    assert path.exists()


# Backoff ------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_jitter_below_it() -> None:
    waits = [backoff_delay(n, 1, 60, 0.0, 0.0) for n in range(1, 10)]
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff_delay(10_000, 1, 60, 0.0, 0.0) == 60  # no overflow after days down
    assert backoff_delay(3, 1, 60, 0.5, 0.999) == pytest.approx(2.002)  # cut, never above
    assert backoff_delay(1, 1, 60, 0.5, 0.0, rejected=True) == 60
    with pytest.raises(ValueError, match=r"backoff_max_s .* is below backoff_s"):
        OutboxParams(backoff_s=10, backoff_max_s=5)


# The warehouse sink: another writer holds the lock, then lets go ------------------------------


def test_rows_wait_while_the_warehouse_is_locked_then_arrive_once(outbox, tmp_path) -> None:
    db = tmp_path / "wh.db"
    engine = connect(f"sqlite:///{db}", connect_timeout_s=0.1)
    init_schema(engine)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # e.g. a long report query taking the write lock
    sender = outbox.sender(WarehouseSink(engine)).start()
    try:
        outbox.enqueue([window(i) for i in range(7)])
        assert sender.wait_until(lambda s: s.send_failures >= 2, WAIT_S)
        stats = sender.stats()
        assert (stats.sent, stats.depth) == (0, 7)
        assert "SinkUnavailable: the warehouse is unavailable" in stats.last_error
        assert "database is locked" in stats.last_error
        blocker.execute("ROLLBACK")
        assert sender.wait_until(lambda s: s.depth == 0, WAIT_S)
    finally:
        blocker.close()
        assert sender.stop() == 0
    with engine.connect() as conn:
        rows = conn.execute(select(emotion_event).order_by(emotion_event.c.window_start)).all()
    assert [(r.window_start, r.face_count, r.mean_confidence) for r in rows] == [
        (w.window_start, w.count, w.mean_confidence) for w in (window(i) for i in range(7))
    ]
    assert sender.stats().consecutive_failures == 0 and sender.stats().sent == 7
    engine.dispose()


def test_a_warehouse_without_the_schema_is_a_refusal_and_down_at_start_is_not(tmp_path) -> None:
    bare = connect(f"sqlite:///{tmp_path / 'bare.db'}")
    with pytest.raises(SinkRejected, match="refused 1 rows: table emotion_event is missing"):
        WarehouseSink(bare).send([window_row(window(0))])
    bare.dispose()

    calls = []

    def factory():  # the database is down when the edge starts, up at the second try
        calls.append(1)
        if len(calls) == 1:
            return connect("postgresql+psycopg://u@127.0.0.1:1/none", connect_timeout_s=2)
        engine = connect(f"sqlite:///{tmp_path / 'wh.db'}")
        init_schema(engine)
        return engine

    sink = WarehouseSink(factory)
    with pytest.raises(SinkUnavailable, match="cannot connect to the warehouse"):
        sink.send([window_row(window(0))])
    sink.send([window_row(window(0))])
    assert len(calls) == 2
    sink.close()


# The HTTP sink: a real local ingest server ---------------------------------------------------


class IngestServer:
    """The /ingest contract with an in-memory upsert, on a fixed port it can leave and retake."""

    def __init__(self, token: str = "s3cret") -> None:
        self.token = token
        self.store: dict[tuple, dict] = {}
        self.requests = 0
        self.refuse_rows = False
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> IngestServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                owner.requests += 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/ingest":
                    return self._reply(404, {"detail": "not found"})
                if self.headers.get("Authorization") != f"Bearer {owner.token}":
                    return self._reply(401, {"detail": "bad token"})
                rows = body["windows"]
                for row in rows:
                    if owner.refuse_rows or set(row) != set(window_row(window())):
                        return self._reply(422, {"detail": f"row refused: {row['label']}"})
                    assert datetime.fromisoformat(row["window_start"]).utcoffset() == timedelta(0)
                for row in rows:  # the upsert: one row per key, the last values win
                    owner.store[key(row)] = row
                self._reply(200, {"accepted": len(rows)})

            def _reply(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ingest"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture()
def ingest():
    server = IngestServer().start()
    yield server
    server.stop()


def test_rows_wait_while_the_api_is_down_then_arrive_exactly_once(outbox, ingest) -> None:
    sender = outbox.sender(HttpSink(ingest.url, "s3cret", timeout=2)).start()
    try:
        outbox.enqueue([window(i) for i in range(4)])
        assert sender.wait_until(lambda s: s.depth == 0, WAIT_S)
        ingest.stop()  # the API goes down
        later = [window(i, label="sad") for i in range(4, 11)]
        outbox.enqueue(later)
        assert sender.wait_until(lambda s: s.send_failures >= 3, WAIT_S)
        assert outbox.depth() == 7 and "cannot reach the ingest API" in sender.stats().last_error
        ingest.start()  # back, on the same port
        assert sender.wait_until(lambda s: s.depth == 0, WAIT_S)
    finally:
        assert sender.stop() == 0
    sent = [window_row(w) for w in [*(window(i) for i in range(4)), *later]]
    assert ingest.store == {key(r): r for r in sent}  # every window, its values, once each
    assert sender.stats().sent == 11


def test_a_wrong_token_keeps_the_rows_until_it_is_fixed(outbox, ingest, caplog) -> None:
    ingest.token = "rotated"
    params = FAST.model_copy(update={"backoff_max_s": 0.2})
    sender = outbox.sender(HttpSink(ingest.url, "s3cret", timeout=2), params=params).start()
    try:
        outbox.enqueue([window(0)])
        assert sender.wait_until(lambda s: s.send_failures >= 2, WAIT_S)
        assert "refused the token (401): check EMOTIONOPS_INGEST_TOKEN" in (
            sender.stats().last_error
        )
        assert outbox.depth() == 1 and ingest.store == {}
        assert "REFUSED the batch" in caplog.text
        ingest.token = "s3cret"  # the server side is put right
        assert sender.wait_until(lambda s: s.depth == 0, WAIT_S)
    finally:
        sender.stop()
    assert list(ingest.store) == [key(window_row(window(0)))]


def test_refused_rows_and_a_wrong_path_are_refusals(outbox, ingest) -> None:
    rows = [window_row(window(0))]
    ingest.refuse_rows = True
    with pytest.raises(SinkRejected, match=r"refused the rows \(422\): .*row refused: happy"):
        HttpSink(ingest.url, "s3cret").send(rows)
    with pytest.raises(SinkRejected, match="answered 404"):
        HttpSink(ingest.url.replace("/ingest", "/ingst"), "s3cret").send(rows)


def test_stop_gives_up_within_its_budget_and_keeps_the_rows(tmp_path, ingest) -> None:
    ingest.stop()
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path, FAST) as box:
        sender = box.sender(HttpSink(ingest.url, "s3cret", timeout=1)).start()
        box.enqueue([window(i) for i in range(5)])
        started = datetime.now(UTC)
        assert sender.stop(timeout_s=0.5) == 5
        assert datetime.now(UTC) - started < timedelta(seconds=5)
    ingest.start()
    with Outbox(path, FAST) as box:  # the next start delivers them
        sender = box.sender(HttpSink(ingest.url, "s3cret")).start()
        assert sender.wait_until(lambda s: s.depth == 0, WAIT_S)
        assert sender.stop() == 0
        sender.start()  # a stopped sender starts again
        box.enqueue([window(9)])
        assert sender.wait_until(lambda s: s.depth == 0, WAIT_S)
        assert sender.stop() == 0
        box.enqueue([window(i, label="sad") for i in range(20)])
        assert box.sender(HttpSink(ingest.url, "s3cret")).stop() == 0  # a stop flushes
    assert len(ingest.store) == 26


# Settings -----------------------------------------------------------------------------------


def test_ingest_settings_choose_the_sink(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EMOTIONOPS_INGEST_URL", "http://api.example/ingest")
    monkeypatch.setenv("EMOTIONOPS_INGEST_TOKEN", "t0ken")
    settings = Settings(project_dir=tmp_path)
    sink = make_sink(settings, params=FAST)
    assert isinstance(sink, HttpSink) and sink.url == "http://api.example/ingest"
    assert "t0ken" not in repr(settings)
    assert isinstance(make_sink(Settings(project_dir=tmp_path, ingest_url=None)), WarehouseSink)
    with pytest.raises(ValueError, match="not an http"):
        Settings(project_dir=tmp_path, ingest_url="api.example/ingest")
    prod = {"environment": "production", "warehouse_url": "sqlite:///x.db",
            "mlflow_tracking_uri": "http://m", "dvc_remote_url": "s3://b/p"}  # fmt: skip
    monkeypatch.delenv("EMOTIONOPS_INGEST_TOKEN")
    with pytest.raises(ValueError, match="production needs EMOTIONOPS_INGEST_TOKEN"):
        Settings(project_dir=tmp_path, **prod)
    monkeypatch.setenv("EMOTIONOPS_ENVIRONMENT", "production")
    for name, value in prod.items():
        monkeypatch.setenv(f"EMOTIONOPS_{name.upper()}", value)
    from emotionops.settings import get_settings

    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match="EMOTIONOPS_INGEST_TOKEN"):
            get_settings()
    finally:
        get_settings.cache_clear()


def timezone_plus(hours: int):
    from datetime import timezone

    return timezone(timedelta(hours=hours))


def test_the_file_is_in_wal_mode_with_full_sync(outbox) -> None:
    """What makes a committed row survive a kill (WAL) and a power cut (fsync per commit)."""
    assert outbox.path.read_bytes()[18:20] == b"\x02\x02"  # header: WAL read/write versions
    assert outbox._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
