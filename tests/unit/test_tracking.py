"""MLflow connectivity: a clear, fast error for a down server or a taken port."""

from __future__ import annotations

import os
import socket

import pytest

from emotionops.tracking import (
    LocalMlflowServer,
    TrackingError,
    ensure_reachable,
    free_port,
    tracking_server,
)


def test_port_in_use_is_a_clear_error(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(TrackingError, match=f"port {port} .* already in use"):
            LocalMlflowServer(tmp_path, port=port).start()


def test_unreachable_server_fails_fast_naming_the_setting() -> None:
    port = free_port()  # nobody listens on it once free_port's socket is closed
    with pytest.raises(TrackingError, match="EMOTIONOPS_MLFLOW_TRACKING_URI"):
        ensure_reachable(f"http://127.0.0.1:{port}", timeout_s=2)
    ensure_reachable("file:///tmp/mlruns")  # no server of ours to probe: nothing raised


def test_a_configured_tracking_uri_is_used_as_is(tmp_path) -> None:
    with tracking_server("http://mlflow.example:5000", tmp_path / "store") as uri:
        assert uri == "http://mlflow.example:5000"
    assert not (tmp_path / "store").exists()  # no local server was started


def test_use_credentials_exports_settings_for_the_mlflow_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from emotionops.settings import Settings
    from emotionops.tracking import PASSWORD_ENV, USERNAME_ENV, use_credentials

    monkeypatch.setenv(USERNAME_ENV, "set-by-hand")  # restored by monkeypatch afterwards
    monkeypatch.setenv(PASSWORD_ENV, "by-hand-password")
    use_credentials(Settings(_env_file=None))  # nothing configured: the environment stays
    assert os.environ[USERNAME_ENV] == "set-by-hand"

    settings = Settings(
        _env_file=None, mlflow_tracking_username="trainer", mlflow_tracking_password="s3cret-pw"
    )
    assert "s3cret-pw" not in repr(settings)
    use_credentials(settings)
    assert (os.environ[USERNAME_ENV], os.environ[PASSWORD_ENV]) == ("trainer", "s3cret-pw")


@pytest.mark.parametrize("given", ["mlflow_tracking_username", "mlflow_tracking_password"])
def test_credentials_come_in_pairs(given: str) -> None:
    from pydantic import ValidationError

    from emotionops.settings import Settings

    with pytest.raises(ValidationError, match="set both EMOTIONOPS_MLFLOW_TRACKING_USERNAME"):
        Settings(_env_file=None, **{given: "x"})
