"""MLflow connectivity: probe a tracking server, and start a local one when none is given.

Training, evaluation, the registry and the warehouse's run loader all reach MLflow through
`ensure_reachable` first. `LocalMlflowServer` (SQLite backend, local artifact store) serves
`make demo`, `make mlflow-ui`, `dvc repro` without a server, and the integration tests; its
lean flags come from PLATFORM-NOTES: one worker and no job execution start in ~4 s with
~500 MB instead of 15 processes and 2.5 GB. The production server (`mlflow/start-server.sh`)
requires credentials: `use_credentials` exports those of Settings for the MLflow client.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import httpx

from emotionops.errors import EmotionOpsError

if TYPE_CHECKING:
    from emotionops.settings import Settings

# Where the MLflow client (mlflow.utils.rest_utils) reads basic-auth credentials: only os.environ.
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"


class TrackingError(EmotionOpsError):
    """The MLflow tracking server is unreachable, or a local one could not be started."""


def use_credentials(settings: Settings) -> None:
    """Export Settings' MLflow credentials as MLFLOW_TRACKING_USERNAME/PASSWORD.

    The MLflow client takes basic-auth credentials from os.environ only, so the entry point
    calls this once and every MLflow call of the process (and of its children) authenticates.
    Unset settings leave the environment alone: MLFLOW_TRACKING_* set by hand still work.
    """
    if settings.mlflow_tracking_username is None or settings.mlflow_tracking_password is None:
        return
    os.environ[USERNAME_ENV] = settings.mlflow_tracking_username
    os.environ[PASSWORD_ENV] = settings.mlflow_tracking_password.get_secret_value()


def _client_auth() -> tuple[str, dict[str, str]]:
    """(what, headers): what the MLflow client sends (basic auth, else MLFLOW_TRACKING_TOKEN as
    a bearer token, as in mlflow.utils.rest_utils), so the probe tests the same credentials."""
    username, password = os.environ.get(USERNAME_ENV), os.environ.get(PASSWORD_ENV)
    if username and password:
        basic = base64.b64encode(f"{username}:{password}".encode()).decode()
        return f"the credentials of user {username!r}", {"Authorization": f"Basic {basic}"}
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return "the token in MLFLOW_TRACKING_TOKEN", {"Authorization": f"Bearer {token}"}
    return "anonymous access", {}


def ensure_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds when an HTTP tracking server is down or refuses us.

    MLflow's client retries a refused connection 7 times with exponential backoff (minutes)
    before giving up; one cheap probe up front turns "server down" into a clear, fast error
    while real calls keep MLflow's retries for transient blips. The probe is an API call with
    the client's credentials (`/health` answers anyone), so missing or wrong credentials and a
    Host header the server does not serve are named here rather than mid-run. Any other
    answer, even 404, means reachable.
    """
    if urlparse(tracking_uri).scheme not in ("http", "https"):
        return  # file:, sqlite:, databricks... have no server of ours to probe
    url = tracking_uri.rstrip("/") + "/api/2.0/mlflow/experiments/search"
    what, headers = _client_auth()
    try:
        answer = httpx.get(url, params={"max_results": 1}, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise TrackingError(
            f"MLflow tracking server at {tracking_uri} is not reachable "
            f"({type(exc).__name__}: {exc}); start it (make mlflow-ui) or fix "
            "EMOTIONOPS_MLFLOW_TRACKING_URI"
        ) from exc
    if answer.status_code == 401:
        raise TrackingError(
            f"MLflow tracking server at {tracking_uri} refused {what} (HTTP 401); set "
            "EMOTIONOPS_MLFLOW_TRACKING_USERNAME and EMOTIONOPS_MLFLOW_TRACKING_PASSWORD"
        )
    if answer.status_code == 403:
        reason = answer.text.strip().splitlines()[0][:200] if answer.text.strip() else "no reason"
        raise TrackingError(
            f"MLflow tracking server at {tracking_uri} refused the request (HTTP 403: {reason}); "
            "if it names the Host header, add this host to the server's MLFLOW_SERVER_ALLOWED_HOSTS"
        )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def server_command(store: Path, host: str, port: int) -> list[str]:
    """The `mlflow server` command line serving `store` (also used by `make mlflow-ui`)."""
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    return [
        str(mlflow_bin),
        "server",
        "--backend-store-uri",
        f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination",
        str(store / "artifacts"),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


class LocalMlflowServer:
    """A `mlflow server` child process; use as a context manager or call start()/stop()."""

    def __init__(self, store: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = Path(store).resolve()
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.store / "server.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 90.0) -> LocalMlflowServer:
        if port_in_use(self.host, self.port):
            raise TrackingError(
                f"port {self.port} on {self.host} is already in use; choose another port "
                "or stop the process that holds it"
            )
        self.store.mkdir(parents=True, exist_ok=True)
        (self.store / "artifacts").mkdir(exist_ok=True)
        env = {
            "MLFLOW_DISABLE_TELEMETRY": "true",
            **os.environ,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            server_command(self.store, self.host, self.port),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TrackingError(
                    f"mlflow server exited with code {self.process.returncode}; see {self.log_path}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)  # polling a child process that has no readiness signal
        self.stop()
        raise TrackingError(
            f"mlflow server not healthy after {timeout_s:.0f}s; see {self.log_path}"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=5)

    def __enter__(self) -> LocalMlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def tracking_server(tracking_uri: str | None, store: Path) -> Iterator[str]:
    """Yield `tracking_uri` when one is configured, else the URL of a local server on `store`
    that lives for the duration (the demo, `train --local-mlflow`)."""
    if tracking_uri:
        yield tracking_uri
        return
    print(f"starting a local MLflow server on {store} ...", file=sys.stderr, flush=True)
    with LocalMlflowServer(store) as server:
        yield server.url
