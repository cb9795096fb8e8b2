"""`dag.test()` runs the whole pipeline DAG on a tiny project with real servers.

MLflow and the search stand-in run from the ML environment as child processes, exactly as
services would next to a scheduler; every task shells out to the ML environment's CLI.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from _project import free_port, make_tiny_project, wait_http

pytestmark = [pytest.mark.dags, pytest.mark.integration]

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture()
def services(tmp_path: Path, ml_venv: Path):
    project = make_tiny_project(tmp_path / "project")
    env = {**os.environ, "EMOTIONOPS_PROJECT_DIR": str(project)}
    store = tmp_path / "mlflow"
    store.mkdir()
    mlflow_port, standin_port = free_port(), free_port()
    procs = [
        subprocess.Popen(
            [
                str(ml_venv / "bin" / "mlflow"), "server",
                "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                "--artifacts-destination", str(store / "artifacts"),
                "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
            ],
            env={**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        ),
        subprocess.Popen(
            [str(ml_venv / "bin" / "emotionops"), "standin", "serve", "--port", str(standin_port)],
            env=env, cwd=project,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        ),
    ]  # fmt: skip
    try:
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        standin_url = f"http://127.0.0.1:{standin_port}"
        wait_http(f"{mlflow_url}/health", timeout_s=120)
        wait_http(f"{standin_url}/", timeout_s=60)
        yield project, mlflow_url, standin_url
    finally:
        for proc in procs:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)


def test_pipeline_dag_runs_end_to_end(services, airflow_db, ml_venv, monkeypatch) -> None:
    project, mlflow_url, standin_url = services
    monkeypatch.setenv("EMOTIONOPS_CLI", str(ml_venv / "bin" / "emotionops"))
    monkeypatch.setenv("EMOTIONOPS_PROJECT_DIR", str(project))
    monkeypatch.setenv("EMOTIONOPS_MLFLOW_TRACKING_URI", mlflow_url)
    monkeypatch.setenv("EMOTIONOPS_SEARCH_URL", standin_url)
    monkeypatch.setenv("EMOTIONOPS_DOWNLOAD_ALLOW_HOSTS", '["127.0.0.1"]')

    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS)).dags["emotionops_pipeline"]
    run = dag.test(logical_date=datetime(2026, 11, 20, tzinfo=UTC))
    assert run.state == "success"

    with sqlite3.connect(project / "data" / "warehouse.db") as db:
        count = {
            t: db.execute(f"select count(*) from {t}").fetchone()[0]
            for t in (
                "image_url",
                "image",
                "dataset_version",
                "training_run",
                "emotion_event",
                "epoch_metric",
                "class_metric",
                "confusion_cell",
                "model_promotion",
            )
        }
        run_dates = {r[0] for r in db.execute("select distinct run_date from image_url")}
    assert count["image_url"] >= 8 and count["image"] >= 8, count
    assert count["dataset_version"] == 1 and count["training_run"] == 1, count
    assert count["emotion_event"] >= 1, count
    # The training run's reporting rows and its promotion audit row were loaded too.
    assert count["epoch_metric"] >= 1 and count["class_metric"] >= 1, count
    assert count["confusion_cell"] >= 1 and count["model_promotion"] >= 1, count
    assert run_dates == {"2026-11-20"}  # the run's logical date partitions the data

    url = f"{mlflow_url}/api/2.0/mlflow/registered-models/alias?name=emotion-classifier&alias=champion"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert json.load(resp)["model_version"]["version"] == "1"
    assert any((project / "dvc-remote").rglob("*")), "dataset not pushed to the DVC remote"
