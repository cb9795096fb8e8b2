"""Edge model delivery against a real MLflow server: pull, cache, hot swap, refuse, offline.

Runs carry a `tflite/` artifact (a tiny model converted in the test) and each is registered
as a version of a fresh model name, exactly as training does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from _factories import registrar, set_champion, write_tiny_tflite
from emotionops.edge.model import EdgeError, ModelWatcher, pull_champion

pytestmark = pytest.mark.integration

LABELS = ["happy", "sad", "neutral"]
SIZE = 48
BRIGHT = np.full((1, SIZE, SIZE), 230, np.uint8)


def build_tflite(out_dir: Path, sign: float) -> Path:
    """Tiny model: sign=+1 calls bright faces "happy", sign=-1 calls them "sad"."""
    return write_tiny_tflite(out_dir, LABELS, SIZE, sign)


class TcpRelay:
    """127.0.0.1:<port> forwarded to the real MLflow server; close() takes the registry away.

    Stopping the relay is what stopping the server looks like to the edge (connections
    refused, open ones reset), without paying a second MLflow server start (~5-30 s here).
    """

    def __init__(self, target_url: str) -> None:
        parsed = urlsplit(target_url)
        self.target = (parsed.hostname, parsed.port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("edge-models")
    broken = root / "broken"
    broken.mkdir()
    (broken / "model.tflite").write_bytes(b"\x00truncated, not a TFLite flatbuffer")
    (broken / "labels.json").write_text(json.dumps({"labels": LABELS, "image_size": SIZE}))
    return {
        "happy": build_tflite(root / "happy", 1.0),
        "sad": build_tflite(root / "sad", -1.0),
        "broken": broken,
    }


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(0.05)  # polling interval while waiting on the watcher thread


def test_pull_hot_swap_and_refuse_broken_version(
    mlflow_server: str, model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    name = f"edge-{uuid.uuid4().hex[:8]}"
    log_version = registrar(mlflow_server, name)
    v1, v2, v3 = (log_version(model_dirs[k]) for k in ("happy", "sad", "broken"))
    assert (v1, v2, v3) == ("1", "2", "3")
    cache = tmp_path / "cache"

    set_champion(mlflow_server, name, v1)
    pulled = pull_champion(mlflow_server, name, cache)
    assert (pulled.version, pulled.from_cache, pulled.warning) == ("1", False, None)
    assert pulled.path == cache / name / "v1"
    assert {p.name for p in pulled.path.iterdir()} == {"model.tflite", "labels.json", "pulled.json"}
    assert pulled.classifier.classify(BRIGHT)[0] == ["happy"]
    # No temp dirs left behind; a second pull is served from the cache.
    assert {p.name for p in (cache / name).iterdir()} == {"v1", "@champion.json"}
    again = pull_champion(mlflow_server, name, cache)
    assert (again.version, again.from_cache, again.run_id) == ("1", True, pulled.run_id)

    with ModelWatcher(mlflow_server, name, cache, initial=pulled, poll_s=0.2) as watcher:
        assert watcher().version == "1"
        set_champion(mlflow_server, name, v2)
        wait_for(lambda: watcher.current.version == "2")
        assert watcher.swaps == 1
        assert watcher().classify(BRIGHT)[0] == ["sad"]  # the new model really is in use

        set_champion(mlflow_server, name, v3)
        wait_for(lambda: "3" in watcher.refused)
        assert "smoke test" in watcher.refused["3"] or "not a loadable" in watcher.refused["3"]
        assert watcher.current.version == "2" and watcher().classify(BRIGHT)[0] == ["sad"]
        assert not (cache / name / "v3").exists()
        # Rolling the alias back swaps back (from the cache, no download).
        set_champion(mlflow_server, name, v1)
        wait_for(lambda: watcher.current.version == "1")
        assert watcher.current.from_cache

    # A fresh start while the champion is broken keeps the last accepted model, loudly.
    set_champion(mlflow_server, name, v3)
    fallback = pull_champion(mlflow_server, name, cache)
    assert fallback.version == "1" and fallback.from_cache
    assert "v3 refused" in fallback.warning and "USING CACHED" in fallback.warning
    with pytest.raises(EdgeError, match="no cached model"):
        pull_champion(mlflow_server, name, tmp_path / "empty-cache")


def test_registry_down_keeps_cached_model(
    mlflow_server: str,
    model_dirs: dict[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Take the registry away: the edge keeps its cached champion and says so."""
    name = f"edge-offline-{uuid.uuid4().hex[:8]}"
    cache = tmp_path / "cache"
    server = TcpRelay(mlflow_server)  # the edge only knows the relay's URL
    try:
        version = registrar(server.url, name)(model_dirs["happy"])
        set_champion(server.url, name, version)
        pulled = pull_champion(server.url, name, cache)
        assert pulled.version == "1" and pulled.warning is None
        watcher = ModelWatcher(server.url, name, cache, initial=pulled, poll_s=60)
        assert watcher.check_now() is False and watcher.last_error is None
    finally:
        server.close()

    caplog.set_level(logging.WARNING, logger="emotionops.edge.model")
    began = time.monotonic()
    offline = pull_champion(server.url, name, cache, timeout_s=2)
    assert time.monotonic() - began < 10  # no minutes of client retries
    assert offline.version == "1" and offline.from_cache
    assert "unreachable" in offline.warning and "USING CACHED" in offline.warning
    assert any("USING CACHED" in r.getMessage() for r in caplog.records)
    assert offline.classifier.classify(BRIGHT)[0] == ["happy"]

    assert watcher.check_now() is False
    assert "unreachable" in watcher.last_error and watcher.current.version == "1"
    # While it stays down, polls back off: retry_s, then doubling, never beyond poll_s.
    assert (watcher.failures, watcher.next_wait_s()) == (1, watcher.retry_s)
    watcher.check_now()
    assert watcher.next_wait_s() == 2 * watcher.retry_s
    watcher.failures = 30
    assert watcher.next_wait_s() == watcher.poll_s

    with pytest.raises(EdgeError, match=r"unreachable.*no cached model"):
        pull_champion(server.url, name, tmp_path / "empty", timeout_s=2)
