"""`dag.test()` runs the daily scraper canary against the real search stand-in and Chromium."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from _project import free_port, make_tiny_project, wait_http

pytestmark = [pytest.mark.dags, pytest.mark.integration]

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture()
def standin(tmp_path: Path, ml_venv: Path):
    project = make_tiny_project(tmp_path / "project")
    port = free_port()
    proc = subprocess.Popen(
        [str(ml_venv / "bin" / "emotionops"), "standin", "serve", "--port", str(port)],
        env={**os.environ, "EMOTIONOPS_PROJECT_DIR": str(project)},
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/", timeout_s=60)
        yield project, url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_canary_dag_is_daily_and_bounded() -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS)).dags["emotionops_scrape_canary"]
    assert [t.task_id for t in dag.tasks] == ["canary"]
    assert dag.timetable.expression == "0 0 * * *"  # @daily


def test_canary_dag_succeeds_against_a_healthy_engine(
    standin, airflow_db, ml_venv, monkeypatch
) -> None:
    project, url = standin
    monkeypatch.setenv("EMOTIONOPS_CLI", str(ml_venv / "bin" / "emotionops"))
    monkeypatch.setenv("EMOTIONOPS_PROJECT_DIR", str(project))
    monkeypatch.setenv("EMOTIONOPS_SEARCH_URL", url)

    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS)).dags["emotionops_scrape_canary"]
    run = dag.test(logical_date=datetime(2026, 11, 21, tzinfo=UTC))
    assert run.state == "success"
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {"canary": "success"}
