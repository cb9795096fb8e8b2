"""`emotionops edge run` as a camera box runs it: in the light edge environment (.venv-edge),
against a real MLflow registry, a live HTTP camera and the real inference API's /ingest.

One story, in order: the sink is down while the edge runs on a live stream, windows pile up
in the outbox, a new champion is hot-swapped mid-stream, the process is SIGKILLed with rows
waiting; then the API comes up and a restart (registry now down: it serves its cache)
delivers every window exactly once.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from _factories import registrar, set_champion, write_light_dark_faces, write_tiny_tflite
from _project import REPO, free_port, wait_http
from emotionops.edge.demo_video import make_demo_video
from emotionops.edge.outbox import default_outbox_path

pytestmark = pytest.mark.integration

EDGE_CLI = REPO / ".venv-edge" / "bin" / "emotionops"
UVICORN = Path(sys.executable).parent / "uvicorn"
LABELS = ["happy", "sad", "neutral"]
TOKEN = "edge-test-token"


def edge_params(root: Path) -> Path:
    """params.yaml with the Haar detector (the drawn faces are not photos) and fast clocks."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    edge = params["edge"]
    edge.update(window_seconds=1, detect_every=2, classify_every=2, poll_s=0.5, retry_s=0.2)
    edge["detection"]["detector"] = "haar"
    edge["outbox"].update(backoff_s=0.1, backoff_max_s=0.3, stop_timeout_s=3)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def metric(url: str, name: str) -> str | None:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name):
                return line
    return None


def wait_until(condition, timeout_s: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except OSError:
            pass  # the health server is not up yet
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        time.sleep(0.2)  # polling a child process's HTTP endpoint


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("edge-video")
    faces = write_light_dark_faces(root)
    return make_demo_video(root / "clip.avi", faces, 6, 10, seed=1)


def test_edge_box_loses_nothing_across_sink_outage_kill_hot_swap_and_registry_outage(
    mlflow_server: str, video: Path, tmp_path: Path
) -> None:
    if not EDGE_CLI.exists():
        pytest.skip(f"{EDGE_CLI} missing: `make setup` creates the edge environment")
    name = f"edge-svc-{uuid.uuid4().hex[:8]}"
    log_version = registrar(mlflow_server, name)
    v1 = log_version(write_tiny_tflite(tmp_path / "m1", LABELS, 48, 1.0))
    v2 = log_version(write_tiny_tflite(tmp_path / "m2", LABELS, 48, -1.0))
    set_champion(mlflow_server, name, v1)

    project = edge_params(tmp_path / "project")
    warehouse = tmp_path / "warehouse.db"
    api_port, health_port = free_port(), free_port()
    env = {
        **os.environ,
        "EMOTIONOPS_PROJECT_DIR": str(project),
        "EMOTIONOPS_DATA_DIR": str(tmp_path / "edge-data"),
        "EMOTIONOPS_MODEL_NAME": name,
        "EMOTIONOPS_MLFLOW_TRACKING_URI": mlflow_server,
        "EMOTIONOPS_INGEST_URL": f"http://127.0.0.1:{api_port}/ingest",
        "EMOTIONOPS_INGEST_TOKEN": TOKEN,
        "EMOTIONOPS_EDGE_HEALTH_PORT": str(health_port),
    }
    health = f"http://127.0.0.1:{health_port}"

    # A live camera: the clip served over HTTP, reopened by the edge each time it ends.
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(video.parent))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    camera = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=camera.serve_forever, daemon=True).start()
    stream = f"http://127.0.0.1:{camera.server_address[1]}/{video.name}"

    # 1. Sink down: the API is not running. Windows wait in the outbox.
    edge = subprocess.Popen(
        [str(EDGE_CLI), "edge", "run", "--source", stream, "--camera-id", "door"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: json.load(urllib.request.urlopen(health + "/healthz", timeout=5))["ok"],
                   what="edge healthy")  # fmt: skip
        state = json.load(urllib.request.urlopen(health + "/healthz", timeout=5))
        assert state["model_version"] == v1 and state["camera_id"] == "door"

        def depth() -> float:
            line = metric(health, "edge_outbox_depth")
            return float(line.split()[-1]) if line else 0.0

        wait_until(lambda: depth() >= 3, what="rows waiting in the outbox")
        assert float(metric(health, "edge_fps").split()[-1]) > 0
        assert 'version="1"' in metric(health, "edge_model_info")

        # 2. A new champion is swapped in without stopping the stream.
        set_champion(mlflow_server, name, v2)
        wait_until(lambda: 'version="2"' in metric(health, "edge_model_info"), what="hot swap")
        wait_until(lambda: depth() >= 6, what="windows of the new model")
    finally:
        edge.send_signal(signal.SIGKILL)  # 3. killed with rows in its outbox
        out, _ = edge.communicate(timeout=30)
        camera.shutdown()
        camera.server_close()
    outbox = default_outbox_path(tmp_path / "edge-data")
    waiting = _outbox_keys(outbox)
    assert len(waiting) >= 6 and {k[3] for k in waiting} >= {"1", "2"}, out[-2000:]

    # 4. The API comes up; the edge restarts while the registry is down, on a file.
    api = subprocess.Popen(
        [str(UVICORN), "--factory", "emotionops.api.app:app_from_env", "--host", "127.0.0.1",
         "--port", str(api_port)],
        env={**env, "EMOTIONOPS_WAREHOUSE_URL": f"sqlite:///{warehouse}",
             "EMOTIONOPS_DATA_DIR": str(tmp_path / "api-data")},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{api_port}/healthz", timeout_s=90)
        offline = {**env, "EMOTIONOPS_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
        done = subprocess.run(
            [str(EDGE_CLI), "edge", "run", "--source", str(video), "--camera-id", "door"],
            env=offline, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "USING CACHED" in done.stderr and "sent" in done.stderr, done.stderr[-3000:]
    finally:
        api.terminate()
        api.communicate(timeout=30)

    stored = _warehouse_rows(warehouse)
    keys = [(r[0], r[1], r[2], r[3]) for r in stored]
    assert len(keys) == len(set(keys))  # nothing counted twice
    for key in waiting:  # every window the killed process had not sent arrived
        assert key in set(keys), key
    assert _outbox_keys(outbox) == set()  # and left the outbox
    # The file run (cached model v2) closed 6 one-second windows of one drawn face each.
    file_rows = [r for r in stored if r[3] == "2" and r[4] == 1]
    assert file_rows and all(r[5] == 1 for r in file_rows)


def _moment(value: str) -> datetime:
    """A window start as stored by the outbox (ISO-8601) or the SQLite warehouse, in UTC."""
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _outbox_keys(path: Path) -> set[tuple]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT camera_id, window_start, label, model_version FROM outbox")
        return {(c, _moment(w), label, v) for c, w, label, v in rows}


def _warehouse_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT camera_id, window_start, label, model_version, distinct_tracks, face_count "
            "FROM emotion_event"
        ).fetchall()
    return [(c, _moment(w), label, *rest) for c, w, label, *rest in rows]
