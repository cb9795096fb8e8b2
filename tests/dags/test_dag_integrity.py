"""The DAG folder imports cleanly, light, and every task is safe to retry and bounded in time;
the assets wire emotion_ingest to emotion_retrain."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.dags

DAGS = Path(__file__).resolve().parents[2] / "dags"
PLUGINS = DAGS.parent / "plugins"
HEAVY = ("emotionops", "tensorflow", "keras", "mlflow", "great_expectations", "pandas", "cv2",
         "dvc", "selenium", "sklearn")  # fmt: skip


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_dags_import_without_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == {"emotion_ingest", "emotion_retrain"}
    for dag in dagbag.dags.values():
        assert dag.doc_md and dag.dag_id in dag.doc_md, dag.dag_id


def test_every_task_has_two_retries_backoff_and_a_timeout(dagbag) -> None:
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            where = f"{dag.dag_id}.{task.task_id}"
            assert task.retries >= 2, f"{where} retries {task.retries}"
            assert task.retry_exponential_backoff, f"{where} has no backoff"
            assert task.execution_timeout is not None, f"{where} has no timeout"
            assert timedelta(0) < task.execution_timeout <= timedelta(hours=3), where


def test_ingest_order_mapping_pool_and_outlet(dagbag) -> None:
    dag = dagbag.dags["emotion_ingest"]
    order = ["canary", "scrape", "validate_urls", "load_urls", "download", "version_data",
             "validate_data", "load_images"]  # fmt: skip
    for upstream, downstream in itertools.pairwise(order):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)
    assert dag.get_task("labels").upstream_task_ids == {"canary"}
    scrape = dag.get_task("scrape")
    assert type(scrape).__name__ == "MappedOperator"  # one task instance per label
    assert "labels" in scrape.upstream_task_ids
    assert dag.get_task("version_data").pool == "emotionops_dvc"
    assert [a.name for a in dag.get_task("load_images").outlets] == ["emotion_dataset"]
    outlets = [t.task_id for t in dag.tasks if t.outlets]
    assert outlets == ["load_images"]  # announced once loaded, after both GX gates
    assert dag.get_task("load_images").upstream_task_ids == {"validate_data"}
    assert dag.get_task("load_urls").upstream_task_ids == {"validate_urls"}
    assert "edge" not in " ".join(getattr(t, "bash_command", "") or "" for t in dag.tasks)


def _assets(condition):
    """(name, uri) of every asset in a schedule's condition (an Asset, AssetAny, AssetAll)."""
    for part in getattr(condition, "objects", None) or [condition]:
        if hasattr(part, "objects"):
            yield from _assets(part)
        else:
            yield part.name, part.uri


def test_retrain_runs_on_the_ingest_asset_or_weekly(dagbag) -> None:
    from airflow.sdk import AssetOrTimeSchedule

    ingest, retrain = dagbag.dags["emotion_ingest"], dagbag.dags["emotion_retrain"]
    produced = {(a.name, a.uri) for t in ingest.tasks for a in t.outlets}
    assert isinstance(retrain.timetable, AssetOrTimeSchedule)
    consumed = set(_assets(retrain.timetable.asset_condition))
    assert produced and produced <= consumed, (produced, consumed)
    assert retrain.timetable.timetable.expression == "0 3 * * 0"  # weekly
    order = ["train", "evaluate", "register", "promote", "load_metrics", "champion_changed"]
    for upstream, downstream in itertools.pairwise(order):
        assert downstream in retrain.get_task(upstream).downstream_task_ids
    assert [a.name for a in retrain.get_task("champion_changed").outlets] == ["emotion_model"]
    assert [t.task_id for t in retrain.tasks if t.outlets] == ["champion_changed"]


def test_cli_tasks_are_templated_with_the_run_date(dagbag) -> None:
    for dag_id, task_id in (("emotion_ingest", "download"), ("emotion_retrain", "train"),
                            ("emotion_ingest", "load_urls")):  # fmt: skip
        dag = dagbag.dags[dag_id]
        command = dag.get_task(task_id).bash_command
        assert f"--run-date {_run_date_template(dag.fileloc)}" in command


def test_dag_files_parse_without_the_ml_libraries() -> None:
    """Parse the DAG folder (and load the plugins) in a fresh interpreter in which importing
    any ML library raises; then check none of them is loaded."""
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys
        HEAVY = {HEAVY!r}
        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in HEAVY:
                    raise ImportError(f"blocked heavy import at parse time: {{name}}")
        sys.meta_path.insert(0, Blocker())
        from airflow import plugins_manager
        from airflow.dag_processing.dagbag import DagBag
        plugins_manager.ensure_plugins_loaded()
        bag = DagBag(dag_folder={str(DAGS)!r})
        assert bag.import_errors == {{}}, bag.import_errors
        assert set(bag.dags) == {{"emotion_ingest", "emotion_retrain"}}, set(bag.dags)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
        assert not loaded, loaded
        print("ok", len(bag.dags))
        """
    )
    env = {**os.environ, "PYTHONPATH": ""}  # nothing but the Airflow environment itself
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and "ok 2" in proc.stdout, proc.stdout + proc.stderr[-3000:]


def test_the_blocker_does_block(tmp_path: Path) -> None:
    """The parse check above can fail: a DAG file importing pandas is refused by it."""
    (tmp_path / "bad_dag.py").write_text(
        "import pandas  # airflow dag\nfrom airflow.sdk import DAG\n"
        "with DAG('bad', schedule=None):\n    pass\n"
    )
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys
        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "pandas":
                    raise ImportError("blocked")
        sys.meta_path.insert(0, Blocker())
        from airflow.dag_processing.dagbag import DagBag
        print(list(DagBag(dag_folder={str(tmp_path)!r}).import_errors))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert "bad_dag.py" in proc.stdout, proc.stdout + proc.stderr[-2000:]


def test_the_shared_wiring_block_is_the_same_in_both_dags() -> None:
    def block(name: str) -> str:
        text = (DAGS / name).read_text()
        return text.split("# --- Shared wiring", 1)[1].split("# --- end of shared wiring", 1)[0]

    assert block("emotion_ingest.py") == block("emotion_retrain.py")


@pytest.mark.parametrize("dag_id", ["emotion_ingest", "emotion_retrain"])
def test_run_date_renders_with_and_without_a_data_interval(dagbag, dag_id: str) -> None:
    """A manual or asset-triggered run may have no data interval: its run_after stands in
    (Airflow's template environment raises on undefined names)."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    dag = dagbag.dags[dag_id]
    template = dag.get_template_env().from_string(_run_date_template(dag.fileloc))
    run = SimpleNamespace(run_after=datetime(2026, 3, 4, 5, tzinfo=UTC))
    assert template.render(dag_run=run) == "2026-03-04"
    interval_end = datetime(2026, 2, 1, tzinfo=UTC)
    assert template.render(dag_run=run, data_interval_end=interval_end) == "2026-02-01"
    assert template.render(dag_run=run, data_interval_end=None) == "2026-03-04"


def _run_date_template(fileloc: str) -> str:
    import ast

    tree = ast.parse(Path(fileloc).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "RUN_DATE":
            return ast.literal_eval(node.value)
    raise AssertionError(f"{fileloc} defines no RUN_DATE")
