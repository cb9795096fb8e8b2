"""`dag.test()` runs emotion_ingest and emotion_retrain end to end on a tiny project with
real servers, then again on the same data interval, then with broken inputs.

MLflow and the search stand-in run from the ML environment as child processes, exactly as
services would next to a scheduler; every task shells out to the ML environment's CLI. One
project serves the module (ingesting and training it twice is what idempotency means); the
bad-input runs use task subsets of the same DAGs on copies or on that project.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from _project import free_port, make_tiny_project, wait_http

pytestmark = [pytest.mark.dags, pytest.mark.integration]

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAY = datetime(2026, 11, 20, tzinfo=UTC)
MODEL = "emotion-classifier"
TABLES = ("image_url", "image", "dataset_version", "training_run", "epoch_metric",
          "class_metric", "confusion_cell", "model_promotion")  # fmt: skip


def _serve(cmd: list[str], env: dict, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once closed


def _cli(ml_venv: Path) -> str:
    # make test-dags sets EMOTIONOPS_CLI (a worktree may point it at its own sources)
    return os.environ.get("EMOTIONOPS_CLI") or str(ml_venv / "bin" / "emotionops")


@pytest.fixture(scope="module")
def services(tmp_path_factory, ml_venv: Path, airflow_db):
    root = tmp_path_factory.mktemp("dagrun")
    project = make_tiny_project(root / "project")
    env = {**os.environ, "EMOTIONOPS_PROJECT_DIR": str(project)}
    store = root / "mlflow"
    store.mkdir()
    mlflow_port, standin_port = free_port(), free_port()
    procs = [
        _serve([str(ml_venv / "bin" / "mlflow"), "server",
                "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                "--artifacts-destination", str(store / "artifacts"),
                "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
               {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}),
        _serve([_cli(ml_venv), "standin", "serve", "--port", str(standin_port)], env, project),
    ]  # fmt: skip
    try:
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        standin_url = f"http://127.0.0.1:{standin_port}"
        wait_http(f"{mlflow_url}/health", timeout_s=120)
        wait_http(f"{standin_url}/", timeout_s=60)
        yield project, mlflow_url, standin_url
    finally:
        _stop(procs)


@pytest.fixture()
def task_env(services, ml_venv: Path, monkeypatch):
    """The worker environment of every task; short retry delays (read at parse time)."""
    project, mlflow_url, standin_url = services
    for key, value in {
        "EMOTIONOPS_CLI": _cli(ml_venv),
        "EMOTIONOPS_PROJECT_DIR": str(project),
        "EMOTIONOPS_MLFLOW_TRACKING_URI": mlflow_url,
        "EMOTIONOPS_MLFLOW_UI_URL": mlflow_url + "/",
        "EMOTIONOPS_SEARCH_URL": standin_url,
        "EMOTIONOPS_DOWNLOAD_ALLOW_HOSTS": '["127.0.0.1"]',
        "EMOTIONOPS_DAG_RETRY_DELAY_S": "0",
    }.items():
        monkeypatch.setenv(key, value)
    return project, mlflow_url


def _dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def _counts(project: Path) -> dict[str, int]:
    with sqlite3.connect(project / "data" / "warehouse.db") as db:
        return {t: db.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES}


def _states(run) -> dict[str, str | None]:
    states: dict[str, str | None] = {}
    for ti in run.get_task_instances():
        key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        states[key] = ti.state
    return states


def _asset_events(name: str) -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(
            select(func.count()).select_from(AssetEvent).join(
                AssetModel, AssetEvent.asset_id == AssetModel.id
            ).where(AssetModel.name == name)
        )  # fmt: skip


def _alias(mlflow_url: str, alias: str = "champion") -> str | None:
    url = f"{mlflow_url}/api/2.0/mlflow/registered-models/alias?name={MODEL}&alias={alias}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.load(resp)["model_version"]["version"]
    except urllib.error.HTTPError:
        return None


def _versions(mlflow_url: str) -> int:
    url = f"{mlflow_url}/api/2.0/mlflow/model-versions/search?filter=name%3D%27{MODEL}%27"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return len(json.load(resp).get("model_versions", []))


def _run_log(capfd) -> str:
    """What the run printed: dag.test() streams every task's log to the console."""
    out, err = capfd.readouterr()
    return " ".join((out + err).split())


def _links(dag_id: str, run, task_id: str) -> dict[str, str]:
    """The task's extra links as the API server resolves them (serialized DAG + plugins)."""
    from airflow.models.serialized_dag import SerializedDagModel

    task = SerializedDagModel.get_dag(dag_id).get_task(task_id)
    ti = next(t for t in run.get_task_instances() if t.task_id == task_id)
    return {name: task.get_extra_links(ti, name) for name in task.extra_links}


def test_ingest_then_retrain_end_to_end_and_again(task_env) -> None:
    project, mlflow_url = task_env
    ingest = _dag("emotion_ingest")
    run = ingest.test(logical_date=DAY)
    states = _states(run)
    assert run.state == "success", states
    labels = ["happy", "sad", "surprise", "neutral"]
    assert [k for k in states if k.startswith("scrape[")] == [f"scrape[{i}]" for i in range(4)]
    for label in labels:  # one manifest file per mapped label task
        assert (project / f"data/manifests/run_date=2026-11-20/labels/{label}.csv").is_file()
    first = _counts(project)
    assert first["image_url"] >= 8 and first["image"] >= 8, first
    assert first["dataset_version"] == 1, first
    assert any((project / "dvc-remote").rglob("*")), "dataset not pushed to the DVC remote"
    with sqlite3.connect(project / "data" / "warehouse.db") as db:
        assert {r[0] for r in db.execute("select distinct run_date from image_url")} == {
            "2026-11-20"
        }
    assert _asset_events("emotion_dataset") == 1
    docs = _links("emotion_ingest", run, "validate_urls")["Data Docs"]
    assert docs.startswith("file:///") and docs.endswith(".html"), docs
    assert Path(docs.removeprefix("file://")).is_file()

    again = ingest.test(logical_date=DAY)  # the same data interval: nothing changes
    assert again.state == "success", _states(again)
    assert _counts(project) == first

    retrain = _dag("emotion_retrain")
    run = retrain.test(logical_date=DAY)
    states = _states(run)
    assert run.state == "success", states
    assert states["champion_changed"] == "success", states
    trained = _counts(project)
    assert trained["training_run"] == 1 and trained["model_promotion"] >= 1, trained
    assert trained["epoch_metric"] >= 1 and trained["confusion_cell"] >= 1, trained
    assert _alias(mlflow_url) == "1" and _versions(mlflow_url) == 1
    assert _asset_events("emotion_model") == 1
    pushed = next(t for t in run.get_task_instances() if t.task_id == "train").xcom_pull(
        task_ids="train"
    )  # the command's JSON line (decoded by the metadata database's XCom reader)
    run_id = (json.loads(pushed) if isinstance(pushed, str) else pushed)["run_id"]
    train_links = _links("emotion_retrain", run, "train")
    assert train_links["MLflow run"] == f"{mlflow_url}/#/runs/{run_id}"
    promote_links = _links("emotion_retrain", run, "promote")
    assert promote_links["Registered version"] == f"{mlflow_url}/#/models/{MODEL}/versions/1"
    with urllib.request.urlopen(f"{mlflow_url}/api/2.0/mlflow/runs/get?run_id={run_id}") as r:
        assert json.load(r)["run"]["info"]["status"] == "FINISHED"  # the link's run exists

    again = retrain.test(logical_date=DAY)  # same interval: the run is reused, nothing moves
    states = _states(again)
    assert again.state == "success", states
    assert states["champion_changed"] == "skipped", states
    assert _counts(project) == trained
    assert _alias(mlflow_url) == "1" and _versions(mlflow_url) == 1
    assert _asset_events("emotion_model") == 1  # a skipped task announces nothing


def test_validation_failure_stops_before_the_load_and_names_the_data_docs(
    task_env, monkeypatch, capfd
) -> None:
    project, _ = task_env
    strict = project / "params-strict.yaml"
    strict.write_text(
        (project / "params.yaml")
        .read_text()
        .replace("min_rows_per_label: 5", "min_rows_per_label: 500")
    )
    monkeypatch.setenv("EMOTIONOPS_PARAMS_FILE", strict.name)
    monkeypatch.setenv("EMOTIONOPS_WAREHOUSE_URL", f"sqlite:///{project / 'strict.db'}")
    dag = _dag("emotion_ingest").partial_subset(
        ["validate_urls", "load_urls"], include_upstream=False
    )
    capfd.readouterr()
    run = dag.test(logical_date=DAY)
    log = _run_log(capfd)
    states = _states(run)
    assert run.state == "failed" and states["validate_urls"] == "failed", states
    assert states["load_urls"] == "upstream_failed", states
    assert not (project / "strict.db").exists()  # nothing was loaded
    assert "validation urls: FAILED" in log or "failed" in log.lower(), log[-3000:]
    page = project / "data" / "gx" / "uncommitted" / "data_docs" / "local_site" / "validations"
    assert f"this run: {page}" in log and ".html" in log, log[-3000:]


def test_warehouse_down_retries_then_fails_clearly(task_env, monkeypatch, capfd) -> None:
    port = _dead_port()
    monkeypatch.setenv("EMOTIONOPS_WAREHOUSE_URL", f"postgresql+psycopg://u@127.0.0.1:{port}/w")
    dag = _dag("emotion_ingest").partial_subset(["load_urls"], include_upstream=False)
    capfd.readouterr()
    run = dag.test(logical_date=DAY)
    log = _run_log(capfd)
    ti = next(t for t in run.get_task_instances() if t.task_id == "load_urls")
    assert run.state == "failed" and ti.state == "failed"
    assert ti.try_number == 3  # two retries, then the failure
    line = f"error: cannot connect to the warehouse at postgresql+psycopg://u@127.0.0.1:{port}"
    assert log.count(line) == 3, log[-3000:]  # every attempt says why


def test_mlflow_down_retries_then_fails_clearly(task_env, monkeypatch, capfd) -> None:
    port = _dead_port()
    monkeypatch.setenv("EMOTIONOPS_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    dag = _dag("emotion_retrain").partial_subset(["train"], include_upstream=False)
    capfd.readouterr()
    run = dag.test(logical_date=datetime(2026, 11, 27, tzinfo=UTC))
    log = _run_log(capfd)
    ti = next(t for t in run.get_task_instances() if t.task_id == "train")
    assert run.state == "failed" and ti.state == "failed" and ti.try_number == 3
    line = f"error: MLflow tracking server at http://127.0.0.1:{port} is not reachable"
    assert log.count(line) == 3, log[-3000:]  # every attempt says why


def test_an_engine_that_yields_nothing_fails_the_run_at_the_canary(
    task_env, ml_venv: Path, monkeypatch, tmp_path: Path, capfd
) -> None:
    project, _ = task_env
    # An engine that answers but yields nothing for the canary's query (the first query of the
    # first label, "happy face"): a stand-in that holds only sad faces.
    only_sad = tmp_path / "only-sad"
    shutil.copytree(project / "data" / "standin" / "sad", only_sad / "sad")
    port = free_port()
    proc = _serve([_cli(ml_venv), "standin", "serve", "--root",
                   str(only_sad), "--port", str(port)], {**os.environ}, project)  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/", timeout_s=60)
        monkeypatch.setenv("EMOTIONOPS_SEARCH_URL", f"http://127.0.0.1:{port}")
        capfd.readouterr()
        run = _dag("emotion_ingest").test(logical_date=datetime(2026, 11, 22, tzinfo=UTC))
        log = _run_log(capfd)
    finally:
        _stop([proc])
    states = _states(run)
    assert run.state == "failed" and states["canary"] == "failed", states
    assert all(s in ("upstream_failed", None) for k, s in states.items() if k != "canary"), states
    assert "canary 'local' query 'happy face': FAILED:" in log, log[-3000:]
    assert not (project / "data/manifests/run_date=2026-11-22").exists()
