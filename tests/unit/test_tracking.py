"""MLflow connectivity: a clear, fast error for a down server or a taken port."""

from __future__ import annotations

import socket

import pytest

from emotionops.tracking import LocalMlflowServer, TrackingError, ensure_reachable, tracking_server


def test_port_in_use_is_a_clear_error(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(TrackingError, match=f"port {port} .* already in use"):
            LocalMlflowServer(tmp_path, port=port).start()


def test_unreachable_server_fails_fast_naming_the_setting() -> None:
    with socket.socket() as sock:  # a port nobody listens on once the socket closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TrackingError, match="EMOTIONOPS_MLFLOW_TRACKING_URI"):
        ensure_reachable(f"http://127.0.0.1:{port}", timeout_s=2)
    ensure_reachable("file:///tmp/mlruns")  # no server of ours to probe: nothing raised


def test_a_configured_tracking_uri_is_used_as_is(tmp_path) -> None:
    with tracking_server("http://mlflow.example:5000", tmp_path / "store") as uri:
        assert uri == "http://mlflow.example:5000"
    assert not (tmp_path / "store").exists()  # no local server was started
