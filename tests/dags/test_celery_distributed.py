"""The distributed path for real: Airflow's CeleryExecutor on Debian's PostgreSQL and Redis,
the api-server, scheduler, dag-processor and two Celery workers as separate processes
(tests/_celery_cluster.py). A DAG run is triggered, its mapped tasks must spread over both
workers, the run must succeed, and stopping the cluster must leave no process behind."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from _celery_cluster import CeleryCluster
from _project import free_port, make_tiny_project, wait_http

REPO = Path(__file__).resolve().parents[2]
INGEST = REPO / "dags" / "emotion_ingest.py"
DVC_POOL = "emotionops_dvc"  # dags/emotion_ingest.py DVC_POOL
DAY = "2026-11-20T00:00:00+00:00"

pytestmark = [pytest.mark.dags, pytest.mark.distributed, pytest.mark.integration]

# Four mapped tasks that each hold a worker slot for a few seconds: with one slot per worker,
# the second worker must take some of them. Each prints where it ran.
MAPPED_DAG = """
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG(dag_id="celery_mapped_probe", schedule=None, catchup=False):
    BashOperator.partial(task_id="probe", retries=0).expand(
        bash_command=[f"sleep 4; echo item {i} on $EMOTIONOPS_CELERY_WORKER" for i in range(4)]
    )
"""


def _wait_for_run(cluster: CeleryCluster, dag_id: str, run_id: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < deadline:
        rows = cluster.sql(
            "select state from dag_run where dag_id = %s and run_id = %s", dag_id, run_id
        )
        state = rows[0][0] if rows else None
        if state in ("success", "failed"):
            return state
        dead = [s.name for s in cluster.services if s.proc.poll() is not None]
        assert not dead, f"{dead} exited during the run:\n{cluster.log_tails()}"
        time.sleep(2)  # polling the metadata DB: the run has no completion signal to wait on
    raise AssertionError(f"run {run_id} still {state} after {timeout_s} s:\n{cluster.log_tails()}")


def _wait_for_dag(cluster: CeleryCluster, dag_id: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not cluster.sql("select 1 from serialized_dag where dag_id = %s", dag_id):
        errors = cluster.sql("select filename, stacktrace from import_error")
        assert not errors, f"DAG import errors: {errors}"
        assert time.monotonic() < deadline, f"{dag_id} not parsed:\n{cluster.log_tails()}"
        time.sleep(1)  # polling: the dag-processor has no readiness signal for a parsed DAG


def run_distributed(
    tmp_path: Path, dags_folder: Path, dag_id: str, mapped_task: str, env: dict[str, str],
    timeout_s: float = 600, pools: tuple[str, ...] = (), logical_date: str | None = None,
) -> dict:  # fmt: skip
    """Start the cluster, trigger dag_id, wait for it, stop everything; return the facts."""
    started = time.monotonic()
    cluster = CeleryCluster(dags_folder=dags_folder, extra_env=env)
    run_id = "distributed_test"
    try:
        with cluster:
            up = time.monotonic()
            _wait_for_dag(cluster, dag_id)
            for pool in pools:
                cluster.cli("pools", "set", pool, "1", "one slot")
            cluster.cli("dags", "trigger", dag_id, "--run-id", run_id,
                        *(["--logical-date", logical_date] if logical_date else []))  # fmt: skip
            state = _wait_for_run(cluster, dag_id, run_id, timeout_s)
            tis = cluster.sql(
                "select task_id, map_index, state, hostname from task_instance"
                " where dag_id = %s and run_id = %s order by task_id, map_index",
                dag_id, run_id,
            )  # fmt: skip
            ran = time.monotonic()
            running = cluster.processes()  # the scan that proves nothing is left, seen working
            tails = cluster.log_tails()
            if state != "success":
                tails = cluster.task_log_tails(dag_id, run_id) + "\n" + tails
        left = cluster.leftover_processes()
        facts = {
            "state": state,
            "tis": tis,
            "mapped": [t for t in tis if t[0] == mapped_task],
            "killed": [s.name for s in cluster.services if s.killed],
            "left": left,
            "running": running,
            "services": len(cluster.services),
            "tails": tails,
            "start_s": up - started,
            "run_s": ran - up,
            "total_s": time.monotonic() - started,
            "peak_pss_mb": cluster.peak_pss_mb,
        }
        (tmp_path / "figures.json").write_text(
            json.dumps({k: facts[k] for k in ("start_s", "run_s", "total_s", "peak_pss_mb")})
        )
        figures = {k: round(facts[k], 1) for k in ("start_s", "run_s", "total_s", "peak_pss_mb")}
        print(f"\ncelery cluster figures: {figures}")
        return facts
    finally:
        cluster.cleanup()


def test_mapped_tasks_spread_over_two_celery_workers(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "celery_mapped_probe.py").write_text(MAPPED_DAG)
    facts = run_distributed(tmp_path, dags, "celery_mapped_probe", "probe", env={})

    assert facts["state"] == "success", f"{facts['tis']}\n{facts['tails']}"
    mapped = facts["mapped"]
    assert [m[1] for m in mapped] == [0, 1, 2, 3] and {m[2] for m in mapped} == {"success"}
    hosts = {m[3].split("@")[0] for m in mapped}
    assert hosts == {"w1", "w2"}, f"mapped tasks ran on {hosts}: {mapped}"
    # Each worker runs a pool child beside its main process: the leftover scan sees children.
    assert len(facts["running"]) > facts["services"], facts["running"]
    assert facts["killed"] == [], f"needed SIGKILL to stop: {facts['killed']}"
    assert facts["left"] == [], f"processes outlived the cluster: {facts['left']}"


@pytest.mark.skipif(not INGEST.exists(), reason="dags/emotion_ingest.py not in this tree yet")
def test_ingest_dag_scrapes_labels_on_both_celery_workers(tmp_path: Path, ml_venv: Path) -> None:
    """The real ingest DAG on the tiny configuration (the local search stand-in, a SQLite
    warehouse in the project, a local DVC remote), its tasks run by two Celery workers."""
    project = make_tiny_project(tmp_path / "project")
    cli = os.environ.get("EMOTIONOPS_CLI") or str(ml_venv / "bin" / "emotionops")
    port = free_port()
    standin = subprocess.Popen(
        [cli, "standin", "serve", "--port", str(port)],
        env={**os.environ, "EMOTIONOPS_PROJECT_DIR": str(project)}, cwd=project,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/", timeout_s=60)
        dags = tmp_path / "dags"
        dags.mkdir()
        shutil.copy(INGEST, dags)  # the ingest DAG alone: no retrain run on its asset
        env = {
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "EMOTIONOPS_CLI": cli,
            "EMOTIONOPS_PROJECT_DIR": str(project),
            "EMOTIONOPS_SEARCH_URL": f"http://127.0.0.1:{port}",
            "EMOTIONOPS_DOWNLOAD_ALLOW_HOSTS": '["127.0.0.1"]',
            "EMOTIONOPS_DAG_RETRY_DELAY_S": "0",
        }
        facts = run_distributed(
            tmp_path, dags, "emotion_ingest", "scrape", env, timeout_s=900, pools=(DVC_POOL,),
            logical_date=DAY,  # a run with a data interval, as the daily schedule makes
        )  # fmt: skip
    finally:
        os.killpg(standin.pid, 15)
        standin.wait(timeout=30)

    assert facts["state"] == "success", f"{facts['tis']}\n{facts['tails']}"
    mapped = facts["mapped"]
    assert [m[1] for m in mapped] == [0, 1, 2, 3] and {m[2] for m in mapped} == {"success"}
    hosts = {m[3].split("@")[0] for m in mapped}
    assert hosts == {"w1", "w2"}, f"scrape tasks ran on {hosts}: {mapped}"
    assert {t[3].split("@")[0] for t in facts["tis"]} <= {"w1", "w2"}, facts["tis"]
    with sqlite3.connect(project / "data" / "warehouse.db") as db:
        urls, images, versions = (
            db.execute(f"select count(*) from {t}").fetchone()[0]
            for t in ("image_url", "image", "dataset_version")
        )
    assert urls >= 8 and images >= 8 and versions == 1, (urls, images, versions)
    assert facts["killed"] == [], f"needed SIGKILL to stop: {facts['killed']}"
    assert facts["left"] == [], f"processes outlived the cluster: {facts['left']}"
