"""`make airflow` / `make airflow-stop` (scripts/airflow-local.sh): a real Airflow standalone
on a free port that serves the project's DAGs, and a stop that leaves no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "airflow-local.sh"

pytestmark = pytest.mark.dags


def _script(action: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(home)
    return subprocess.run(
        [str(SCRIPT), action], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _api(url: str, token: str | None = None, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _group_alive(pgid: int) -> bool:
    return subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True).returncode == 0


def test_make_airflow_serves_the_project_dags_and_stops_every_process(tmp_path: Path) -> None:
    home = tmp_path / "airflow-home"
    started = _script("start", home)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        url = (home / "standalone.url").read_text().strip()
        assert f"Airflow is up: {url}" in started.stdout
        passwords = home / "simple_auth_manager_passwords.json.generated"
        assert str(passwords) in started.stdout  # says where the admin password is
        token = _api(
            f"{url}/auth/token",
            body={"username": "admin", "password": json.loads(passwords.read_text())["admin"]},
        )["access_token"]
        wanted, dags = {"emotion_ingest", "emotion_retrain"}, set()
        deadline = time.monotonic() + 120  # the DAG processor parses the folder after start
        while not wanted <= dags and time.monotonic() < deadline:
            dags = {d["dag_id"] for d in _api(f"{url}/api/v2/dags", token)["dags"]}
            time.sleep(1)  # polling a server that has no readiness signal for parsed DAGs
        assert wanted <= dags, dags
        pool = _api(f"{url}/api/v2/pools/emotionops_dvc", token)  # DVC: one writer
        assert pool["slots"] == 1, pool
        assert "Airflow is already running" in _script("start", home).stdout  # idempotent
        pgid = int((home / "standalone.pid").read_text())
    finally:
        stopped = _script("stop", home)
    assert stopped.returncode == 0 and "Airflow stopped" in stopped.stdout, stopped.stderr
    assert not _group_alive(pgid), "a process of the local Airflow outlived airflow-stop"
    assert not (home / "standalone.pid").exists()
