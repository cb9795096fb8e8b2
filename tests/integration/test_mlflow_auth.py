"""The production MLflow server with authentication, started through `mlflow/start-server.sh`
exactly as the image runs it: MLflow's basic-auth app, a real PostgreSQL backend store (which
also holds the users, the script's default), artifacts proxied to S3 (moto_server), one
worker, on a free port.

It checks what the deployment promises: /health answers anyone (the compose healthcheck),
the API refuses anonymous and wrong credentials, the Host allowlist comes from the
environment, and the platform's own calls (probe, run logging, registration and the champion
alias, `warehouse load-run` through the CLI) work with credentials taken from Settings. The
script's refusals (default or missing password, missing secret...) are checked without
starting anything.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from _project import free_port, moto_s3
from emotionops.tracking import PASSWORD_ENV, USERNAME_ENV

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "mlflow" / "start-server.sh"
BIN = Path(sys.executable).parent
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"
BUCKET = "mlflow-artifacts"
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
CLIENT_ENV = (USERNAME_ENV, PASSWORD_ENV, "MLFLOW_TRACKING_TOKEN")


@dataclass(frozen=True)
class AuthServer:
    url: str
    port: int
    password: str  # the admin's
    backend_uri: str
    s3: Any  # a boto3 S3 client on the moto server
    log: Path


def script_env(**values: str) -> dict[str, str]:
    """Only what the script is given (no MLFLOW_* leaking in from the caller), and PATH with
    this environment's `mlflow` first, as the image has it."""
    return {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}", **values}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """A real S3 API (moto_server, in memory) holding the artifact bucket."""
    import boto3

    moto = BIN / "moto_server"
    if not moto.is_file():
        pytest.skip("moto_server is not installed (requirements/ml.in: moto[server])")
    with moto_s3(moto) as endpoint:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
            region_name=AWS["AWS_DEFAULT_REGION"],
        )
        client.create_bucket(Bucket=BUCKET)
        yield endpoint, client


def wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float) -> None:
    """Poll /health until 200; fail at once with the log when the script or server exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"start-server.sh exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"no /health within {timeout_s:.0f}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def auth_server(
    postgres_server: Any, s3: tuple[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AuthServer]:
    root = tmp_path_factory.mktemp("mlflow-auth")
    port = free_port()
    password = secrets.token_urlsafe(18)
    backend = postgres_server.create_database(f"mlflow_{uuid.uuid4().hex[:8]}")
    endpoint, client = s3
    env = script_env(
        MLFLOW_AUTH_ADMIN_PASSWORD=password,
        MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(32),
        MLFLOW_BACKEND_STORE_URI=backend,
        MLFLOW_ARTIFACTS_DESTINATION=f"s3://{BUCKET}/mlflow",
        MLFLOW_S3_ENDPOINT_URL=endpoint,
        MLFLOW_HOST="127.0.0.1",
        MLFLOW_PORT=str(port),
        MLFLOW_SERVER_ALLOWED_HOSTS=f"127.0.0.1:{port}",
        TMPDIR=str(root),  # where the script writes its basic_auth.ini
        HOME=str(root),
        **AWS,
    )
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SCRIPT)], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, log, timeout_s=120)
        yield AuthServer(url, port, password, backend, client, log)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the script exec'd mlflow: its group is the server
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@contextmanager
def own_client_env() -> Iterator[None]:
    """The MLflow client's credential variables, cleared here and restored after
    (use_credentials writes os.environ itself)."""
    saved = {name: os.environ.pop(name, None) for name in CLIENT_ENV}
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


@pytest.fixture
def client_env() -> Iterator[None]:
    with own_client_env():
        yield


def settings_for(monkeypatch: pytest.MonkeyPatch, url: str, user: str, password: str) -> Any:
    """Settings built from EMOTIONOPS_* variables, as the CLI builds them."""
    from emotionops.settings import Settings

    monkeypatch.setenv("EMOTIONOPS_MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("EMOTIONOPS_MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("EMOTIONOPS_MLFLOW_TRACKING_PASSWORD", password)
    return Settings(_env_file=None)


def log_training_run(tracking_uri: str) -> Any:
    """A small run in train()'s layout (the params, metrics and evaluation/ files that
    `warehouse load-run` reads, and a real logged model, which registration needs)."""
    import mlflow

    from emotionops.training.train import TrainResult

    class Identity(mlflow.pyfunc.PythonModel):
        def predict(self, context: Any, model_input: list[float]) -> list[float]:
            return model_input

    labels = ["happy", "sad"]
    per_class = {
        label: {"precision": 0.8, "recall": 0.8, "specificity": 0.8, "f1": 0.8, "support": 5.0}
        for label in labels
    }
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"it-auth-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({"model": "small_cnn", "labels": json.dumps(labels), "n_train": 20,
                           "n_val": 4, "n_test": 10})  # fmt: skip
        mlflow.log_metrics({"test_accuracy": 0.8, "test_macro_f1": 0.8, "epochs_run": 1.0})
        mlflow.log_metrics({"train_accuracy": 0.7, "val_accuracy": 0.75}, step=0)
        evaluation = Path(tmp)
        (evaluation / "per_class_metrics.json").write_text(json.dumps(per_class))
        (evaluation / "confusion_matrix.csv").write_text(
            "true\\predicted,happy,sad\nhappy,4,1\nsad,1,4\n"
        )
        mlflow.log_artifacts(tmp, "evaluation")
        info = mlflow.pyfunc.log_model(name="model", python_model=Identity(), pip_requirements=[])
    return TrainResult(
        run_id=run.info.run_id, model_uri=info.model_uri, test_accuracy=0.8, val_accuracy=0.75,
        n_train=20, n_val=4, n_test=10, epochs_run=1, per_class=per_class, tflite_parity=0.0,
    )  # fmt: skip


def test_health_is_open_and_the_api_needs_credentials(auth_server: AuthServer) -> None:
    url, admin = auth_server.url, ("admin", auth_server.password)
    assert httpx.get(url + "/health").status_code == 200  # the compose healthcheck, no auth
    assert httpx.get(url + SEARCH).status_code == 401
    assert httpx.get(url + SEARCH, auth=("admin", "not-the-password")).status_code == 401
    assert httpx.get(url + SEARCH, auth=admin).status_code == 200
    # --allowed-hosts from MLFLOW_SERVER_ALLOWED_HOSTS: another Host header is refused
    refused = httpx.get(url + SEARCH, auth=admin, headers={"Host": "attacker.example"})
    assert refused.status_code == 403 and "Invalid Host header" in refused.text


def test_the_probe_names_what_to_fix(
    auth_server: AuthServer, client_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emotionops.tracking import TrackingError, ensure_reachable, use_credentials

    url = auth_server.url
    with pytest.raises(TrackingError, match=r"refused anonymous access \(HTTP 401\).*_USERNAME"):
        ensure_reachable(url)
    use_credentials(settings_for(monkeypatch, url, "admin", "not-the-password"))
    with pytest.raises(TrackingError, match="refused the credentials of user 'admin'"):
        ensure_reachable(url)
    use_credentials(settings_for(monkeypatch, url, "admin", auth_server.password))
    ensure_reachable(url)
    with pytest.raises(TrackingError, match=r"Invalid Host header.*MLFLOW_SERVER_ALLOWED_HOSTS"):
        ensure_reachable(f"http://localhost:{auth_server.port}")  # a host the server does not serve


@pytest.fixture(scope="module")
def champion(auth_server: AuthServer) -> Iterator[tuple[str, Any, Any]]:
    """A run logged and registered as champion by the platform's own code, authenticated
    with credentials from Settings exported by use_credentials."""
    from mlflow import MlflowClient

    from emotionops.registry import move_alias, register
    from emotionops.settings import Settings
    from emotionops.tracking import ensure_reachable, use_credentials

    settings = Settings(
        _env_file=None,
        mlflow_tracking_uri=auth_server.url,
        mlflow_tracking_username="admin",
        mlflow_tracking_password=auth_server.password,
    )
    with own_client_env():
        use_credentials(settings)
        uri = settings.mlflow_tracking_uri
        ensure_reachable(uri)
        result = log_training_run(uri)
        name = f"it-auth-model-{uuid.uuid4().hex[:6]}"
        version = register(uri, name, result.run_id)  # alias challenger, audited
        # this run holds no gateable model: move the alias as `registry promote` does
        promotion = move_alias(MlflowClient(uri, uri), version, "champion", "promoted",
                               "no champion yet", None)  # fmt: skip
    yield name, result, promotion


def test_platform_calls_work_with_credentials_from_settings(
    auth_server: AuthServer, champion: tuple[str, Any, Any], client_env: None
) -> None:
    from mlflow import MlflowClient
    from sqlalchemy import create_engine, inspect

    name, result, promotion = champion
    assert promotion.decision == "promoted" and promotion.reason == "no champion yet"
    admin = ("admin", auth_server.password)
    alias = httpx.get(
        auth_server.url + "/api/2.0/mlflow/registered-models/alias",
        params={"name": name, "alias": "champion"},
        auth=admin,
    )
    assert alias.status_code == 200, alias.text
    assert alias.json()["model_version"]["version"] == str(promotion.model_version)
    assert httpx.get(auth_server.url + "/api/2.0/mlflow/runs/get",
                     params={"run_id": result.run_id}).status_code == 401  # fmt: skip
    # Artifacts went through the server's proxy into the S3 bucket, not to a local folder.
    keys = [o["Key"] for o in auth_server.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert any(k.endswith(f"{result.run_id}/artifacts/evaluation/per_class_metrics.json")
               for k in keys), keys  # fmt: skip
    # The users live in the backend's PostgreSQL database (the script's default there).
    engine = create_engine(auth_server.backend_uri)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"users", "alembic_version_auth", "experiments", "runs"} <= tables
    # Reading back as the admin via the client, as the edge and evaluate do.
    os.environ.update({USERNAME_ENV: "admin", PASSWORD_ENV: auth_server.password})
    client = MlflowClient(tracking_uri=auth_server.url, registry_uri=auth_server.url)
    assert client.get_model_version_by_alias(name, "champion").run_id == result.run_id


def test_cli_takes_the_credentials_from_the_environment(
    auth_server: AuthServer, champion: tuple[str, Any, Any], tmp_path: Path
) -> None:
    """The entry point exports EMOTIONOPS_MLFLOW_TRACKING_* for the MLflow client: a real
    command that reads a run, its artifacts and its registry versions succeeds with them and
    stops with one line without them."""
    _, result, _ = champion
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("EMOTIONOPS_", "MLFLOW_TRACKING_"))}  # fmt: skip
    base.update(EMOTIONOPS_PROJECT_DIR=str(tmp_path), EMOTIONOPS_MLFLOW_TRACKING_URI=auth_server.url,
                COLUMNS="200")  # fmt: skip
    cli = [str(BIN / "emotionops"), "warehouse", "load-run", result.run_id]

    anonymous = subprocess.run(cli, cwd=tmp_path, env=base, capture_output=True, text=True,
                               timeout=180)  # fmt: skip
    assert anonymous.returncode == 2, anonymous.stderr
    assert "refused anonymous access" in anonymous.stderr
    assert "EMOTIONOPS_MLFLOW_TRACKING_USERNAME" in " ".join(anonymous.stderr.split())

    authenticated = subprocess.run(
        cli, cwd=tmp_path, capture_output=True, text=True, timeout=180,
        env={**base, "EMOTIONOPS_MLFLOW_TRACKING_USERNAME": "admin",
             "EMOTIONOPS_MLFLOW_TRACKING_PASSWORD": auth_server.password},
    )  # fmt: skip
    assert authenticated.returncode == 0, authenticated.stderr
    assert "training_run 1" in authenticated.stderr and "model_promotion 2" in (
        " ".join(authenticated.stderr.split())
    )  # its registration (challenger) and its promotion
    assert auth_server.password not in authenticated.stderr + authenticated.stdout


VALID = {
    "MLFLOW_AUTH_ADMIN_PASSWORD": "a-long-enough-password",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "0123456789abcdef",
    "MLFLOW_BACKEND_STORE_URI": "sqlite:///{root}/mlflow.db",
    "MLFLOW_ARTIFACTS_DESTINATION": "{root}/artifacts",
}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MLFLOW_AUTH_ADMIN_PASSWORD", "password1234", "MLflow's publicly known default password"),
        ("MLFLOW_AUTH_ADMIN_PASSWORD", None, "MLFLOW_AUTH_ADMIN_PASSWORD is not set"),
        ("MLFLOW_AUTH_ADMIN_PASSWORD", "", "MLFLOW_AUTH_ADMIN_PASSWORD is not set"),
        ("MLFLOW_AUTH_ADMIN_PASSWORD", "short-pw", "shorter than 12 characters"),
        ("MLFLOW_FLASK_SERVER_SECRET_KEY", None, "MLFLOW_FLASK_SERVER_SECRET_KEY is not set"),
        ("MLFLOW_BACKEND_STORE_URI", None, "MLFLOW_BACKEND_STORE_URI is not set"),
        ("MLFLOW_ARTIFACTS_DESTINATION", None, "MLFLOW_ARTIFACTS_DESTINATION is not set"),
    ],
)
def test_the_script_refuses_an_unsafe_configuration(
    tmp_path: Path, variable: str, value: str | None, message: str
) -> None:
    values = {k: v.format(root=tmp_path) for k, v in VALID.items()}
    values.update(MLFLOW_HOST="127.0.0.1", MLFLOW_PORT=str(free_port()), TMPDIR=str(tmp_path))
    if value is None:
        del values[variable]
    else:
        values[variable] = value
    started = time.monotonic()
    proc = subprocess.run(
        [str(SCRIPT)], env=script_env(**values), capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("start-server.sh: ")
    assert message in proc.stderr and proc.stdout == ""
    assert elapsed < 5, f"refusing took {elapsed:.1f}s: it should not start MLflow at all"
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no ini: nothing started


def test_a_changed_password_is_refused_at_once_despite_the_credential_cache(
    auth_server: AuthServer,
) -> None:
    """The script turns MLflow's credential cache on (a PBKDF2 check per request otherwise);
    a password change through the API must still take effect immediately."""
    url, admin = auth_server.url, ("admin", auth_server.password)
    user, old, new = (
        f"it-{uuid.uuid4().hex[:6]}",
        secrets.token_urlsafe(16),
        secrets.token_urlsafe(16),
    )
    created = httpx.post(url + "/api/2.0/mlflow/users/create",
                         json={"username": user, "password": old}, auth=admin)  # fmt: skip
    assert created.status_code == 200, created.text
    assert httpx.get(url + SEARCH, auth=(user, old)).status_code == 200  # now cached
    changed = httpx.patch(url + "/api/2.0/mlflow/users/update-password",
                          json={"username": user, "password": new}, auth=admin)  # fmt: skip
    assert changed.status_code == 200, changed.text
    assert httpx.get(url + SEARCH, auth=(user, old)).status_code == 401
    assert httpx.get(url + SEARCH, auth=(user, new)).status_code == 200
