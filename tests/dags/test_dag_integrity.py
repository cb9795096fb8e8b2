"""The DAG folder imports cleanly and every task is safe to retry and bounded in time."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

pytestmark = pytest.mark.dags

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_dags_import_without_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert "emotionops_pipeline" in dagbag.dags


def test_every_task_has_retries_and_a_timeout(dagbag) -> None:
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag.dag_id}.{task.task_id} has no retries"
            assert task.execution_timeout is not None, f"{task.task_id} has no timeout"


def test_pipeline_order_and_dataset_asset(dagbag) -> None:
    dag = dagbag.dags["emotionops_pipeline"]
    order = [
        "scrape",
        "validate_urls",
        "load_urls",
        "download",
        "version_data",
        "validate_data",
        "load_images",
        "train",
        "edge_smoke",
    ]
    for upstream, downstream in itertools.pairwise(order):
        assert downstream in dag.get_task(upstream).downstream_task_ids
    # Announced only after the split passed its suites.
    assert [a.name for a in dag.get_task("validate_data").outlets] == ["emotion_dataset"]
    assert dag.get_task("version_data").outlets == []


def test_validation_gates_run_the_validate_command_before_each_load(dagbag) -> None:
    dag = dagbag.dags["emotionops_pipeline"]
    for gate, load, what in (
        ("validate_urls", "load_urls", "urls"),
        ("validate_data", "load_images", "data"),
    ):
        task = dag.get_task(gate)
        assert f" validate {what} --run-date {{{{ ds }}}}" in task.bash_command
        assert dag.get_task(load).upstream_task_ids == {gate}


def test_dag_files_do_no_heavy_imports() -> None:
    heavy = ("tensorflow", "pandas", "mlflow", "sqlalchemy", "emotionops", "cv2")
    for path in DAGS.glob("*.py"):
        text = path.read_text()
        for name in heavy:
            assert f"import {name}" not in text and f"from {name}" not in text, (path, name)
