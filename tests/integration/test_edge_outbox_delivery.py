"""End to end through the edge outbox: a real edge process killed with rows in its outbox
(before it sent, and after the warehouse committed a batch it had not yet deleted), then a
new process drains them; and a real PostgreSQL warehouse that stops and starts again. Every
window must arrive exactly once, with its values."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from emotionops.edge.outbox import Outbox, window_row
from emotionops.edge.report import EmotionWindow
from emotionops.edge.sinks import WarehouseSink
from emotionops.params import OutboxParams
from emotionops.warehouse import connect, init_schema
from emotionops.warehouse.schema import UNKNOWN_MODEL_VERSION, emotion_event

pytestmark = pytest.mark.integration

SRC = Path(__file__).resolve().parents[2] / "src"
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
FAST = OutboxParams(windows_per_send=10, backoff_s=0.05, backoff_max_s=0.2, idle_poll_s=0.05)
WAIT_S = 30


def windows(n: int) -> list[EmotionWindow]:
    """n windows over three labels, with a hot swap (v1 -> v2) in the middle of window 3."""
    out = []
    for i in range(n):
        index = i // 3
        version = "1" if index < 3 else "2"
        out.append(
            EmotionWindow(
                camera_id="door", window_start=T0 + timedelta(seconds=5 * index),
                window_seconds=5.0, label=("happy", "sad", "neutral")[i % 3], count=1 + i % 4,
                mean_confidence=round(0.4 + (i % 7) / 10, 3), model_version=version,
                observations=3 + i, distinct_tracks=2 + i % 5,
            )
        )  # fmt: skip
    swap = out[9]  # window 3, label happy, seen by the old model before the swap
    out.append(EmotionWindow(**{**swap.__dict__, "model_version": "1", "count": 7}))
    out.append(EmotionWindow(**{**swap.__dict__, "model_version": None, "count": 1}))
    return out


def warehouse_rows(engine) -> dict[tuple, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(select(emotion_event)).all()
    return {
        (r.camera_id, r.window_start, r.label, r.model_version): (
            r.window_seconds, r.face_count, r.mean_confidence, r.observations, r.distinct_tracks
        )
        for r in rows
    }  # fmt: skip


def expected_rows(ws: list[EmotionWindow]) -> dict[tuple, tuple]:
    return {
        (w.camera_id, w.window_start, w.label, w.model_version or UNKNOWN_MODEL_VERSION): (
            w.window_seconds, w.count, w.mean_confidence, w.observations, w.distinct_tracks
        )
        for w in ws
    }  # fmt: skip


EDGE = textwrap.dedent(
    """
    import json, sys
    from emotionops.edge.outbox import open_outbox
    from emotionops.edge.sinks import WarehouseSink
    from emotionops.params import OutboxParams
    from emotionops.warehouse import connect

    path, url, rows_file, mode = sys.argv[1:5]
    params = OutboxParams(windows_per_send=10, backoff_s=0.05, backoff_max_s=0.2, idle_poll_s=0.05)
    box = open_outbox(path, params)
    rows = json.loads(open(rows_file).read())

    if mode == "before-send":  # the warehouse is unreachable: rows pile up, nothing is sent
        for row in rows:
            box.enqueue([row])  # one commit per closed window, as the live loop does
        print(f"queued {box.depth()}", flush=True)
    else:  # after-commit: the warehouse stored a batch, the outbox has not deleted it yet
        class Holding(WarehouseSink):
            def send(self, batch):
                super().send(batch)
                print(f"committed {len(batch)}", flush=True)
                sys.stdin.read()  # killed here, between the sink's commit and our delete

        box.enqueue(rows)
        box.sender(Holding(connect(url))).start()
    sys.stdin.read()  # hold until the test kills us
    """
)

DRAIN = textwrap.dedent(
    """
    import sys
    from emotionops.edge.outbox import open_outbox
    from emotionops.edge.sinks import make_sink
    from emotionops.settings import Settings
    from emotionops.warehouse import connect

    path, url = sys.argv[1:3]
    box = open_outbox(path)
    settings = Settings(warehouse_url=url, ingest_url=None)
    sender = box.sender(make_sink(settings, lambda: connect(url)))
    sent = sender.flush(60)
    print(f"sent {sent} left {box.depth()}", flush=True)
    """
)


def run_edge_and_kill(args: list[str], expect: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-c", EDGE, *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.strip() == expect, proc.stderr.read() if proc.poll() is not None else line
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("moment", ["before-send", "after-commit"])
def test_an_edge_killed_with_rows_in_its_outbox_loses_and_doubles_nothing(
    tmp_path: Path, moment: str
) -> None:
    ws = windows(30)
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps([window_row(w) for w in ws]))
    outbox = tmp_path / "edge" / "outbox.sqlite3"
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    engine = connect(url)
    init_schema(engine)

    if moment == "before-send":
        run_edge_and_kill([str(outbox), url, str(rows_file), moment], f"queued {len(ws)}")
        assert warehouse_rows(engine) == {}
    else:
        run_edge_and_kill([str(outbox), url, str(rows_file), moment], "committed 10")
        assert len(warehouse_rows(engine)) == 10  # delivered, yet still in the outbox
    with Outbox(outbox) as box:
        assert box.depth() == len(ws)  # every window survived the kill

    drain = subprocess.run(
        [sys.executable, "-c", DRAIN, str(outbox), url],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(SRC)},
    )  # fmt: skip
    assert drain.stdout.strip() == f"sent {len(ws)} left 0", drain.stderr
    got = warehouse_rows(engine)
    assert got == expected_rows(ws)  # each window once, with its values
    assert len(got) == len(ws) == 32
    swap = (ws[9].camera_id, ws[9].window_start, ws[9].label)
    assert {k[3]: v[1] for k, v in got.items() if k[:3] == swap} == {
        "1": 7, "2": ws[9].count, UNKNOWN_MODEL_VERSION: 1
    }  # fmt: skip
    engine.dispose()


def test_rows_wait_while_postgresql_is_down_then_arrive_once(tmp_path: Path) -> None:
    from _postgres import LocalPostgres, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries not found in /usr/lib/postgresql (run `make setup`)")
    ws = windows(24)
    with LocalPostgres(bin_dir) as server:  # its own server: this test stops it
        url = server.create_database("wh")
        engine = connect(url, connect_timeout_s=2)
        init_schema(engine)
        with Outbox(tmp_path / "outbox.sqlite3", FAST) as box:
            sender = box.sender(WarehouseSink(engine)).start()
            try:
                box.enqueue(ws[:8])
                assert sender.wait_until(lambda s: s.depth == 0, WAIT_S)
                server.pause()  # the database goes down
                box.enqueue(ws[8:])
                assert sender.wait_until(lambda s: s.send_failures >= 2, WAIT_S)
                stats = sender.stats()
                assert stats.depth == len(ws) - 8 and stats.sent == 8
                assert "SinkUnavailable: the warehouse is unavailable" in stats.last_error
                server.resume()  # back on the same port
                assert sender.wait_until(lambda s: s.depth == 0, WAIT_S)
            finally:
                left = sender.stop()
            assert left == 0 and sender.stats().sent == len(ws)
        assert warehouse_rows(engine) == expected_rows(ws)
        engine.dispose()
