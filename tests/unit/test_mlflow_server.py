"""The local MLflow server helper refuses a taken port with a clear error."""

from __future__ import annotations

import socket

import pytest

from emotionops.mlflow_server import LocalMlflowServer, MlflowServerError


def test_port_in_use_is_a_clear_error(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(MlflowServerError, match=f"port {port} .* already in use"):
            LocalMlflowServer(tmp_path, port=port).start()
