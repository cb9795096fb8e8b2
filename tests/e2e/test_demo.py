"""`emotionops demo` end to end on a tiny project, twice: real Chromium, a real MLflow
server, real DVC. The second run must duplicate nothing and register a second version."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _project import make_tiny_project

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

EMOTIONOPS = Path(sys.executable).with_name("emotionops")


def _demo(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTIONOPS_")}
    env.update({"EMOTIONOPS_PROJECT_DIR": str(project), "COLUMNS": "200"})
    return subprocess.run(
        [str(EMOTIONOPS), "demo", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def _counts(project: Path) -> dict[str, int]:
    from emotionops.warehouse import connect, table_counts

    return table_counts(connect(f"sqlite:///{project / 'data' / 'warehouse.db'}"))


def _training_runs(project: Path) -> list:
    from sqlalchemy import select

    from emotionops.warehouse import connect
    from emotionops.warehouse.schema import training_run

    engine = connect(f"sqlite:///{project / 'data' / 'warehouse.db'}")
    with engine.connect() as conn:
        return conn.execute(select(training_run)).all()


def _registry(project: Path) -> tuple[list[str], str]:
    """(all versions, champion version) read through a real server on the demo's store."""
    from mlflow import MlflowClient

    from emotionops.tracking import LocalMlflowServer

    with LocalMlflowServer(project / "data" / "mlflow") as server:
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        versions = sorted(
            v.version for v in client.search_model_versions("name='emotion-classifier'")
        )
        champion = client.get_model_version_by_alias("emotion-classifier", "champion")
        model = client.get_run(champion.tags["run_id"]).data.params["model"]
    assert model == "small_cnn", "the demo trains with params.yaml's demo.train recipe"
    return versions, champion.version


def test_demo_runs_end_to_end_and_is_safe_to_repeat(tmp_path: Path) -> None:
    project = make_tiny_project(tmp_path / "project")

    first = _demo(project)
    assert first.returncode == 0, first.stderr[-4000:]
    assert "EmotionOps demo" in first.stderr and "champion" in first.stderr
    counts = _counts(project)
    assert counts["image_url"] >= 16 and counts["image"] >= 16, counts
    assert counts["dataset_version"] == 1 and counts["training_run"] == 1, counts
    assert counts["emotion_event"] >= 1, counts
    # The dashboard's rows: every kept URL's download record (plus cleanup's rejects), the
    # five suites of the run date (urls: 2, data: 3), the deployed model's test loss.
    assert counts["url_outcome"] >= counts["image_url"], counts
    assert counts["validation_result"] == 5, counts
    run = _training_runs(project)[0]
    assert run.test_loss is not None and run.test_loss > 0 and run.duration_s > 0
    assert run.labels and run.key_params and run.train_loss is not None
    assert any(p.is_file() for p in (project / "dvc-remote").rglob("*")), "nothing pushed to DVC"
    assert _registry(project) == (["1"], "1")
    # The static dashboard: its pages hold the run, the ingest run and the demo camera.
    report = project / "data" / "report"
    assert "run_id" in (report / "models.html").read_text()
    assert run.run_id in (report / "models.html").read_text()
    assert any((report / "thumbs").glob("*.jpg")), "no sample thumbnails in the report"
    assert '"camera_id"' in (report / "analytics.html").read_text()

    second = _demo(project)
    assert second.returncode == 0, second.stderr[-4000:]
    again = _counts(project)
    for table in ("image_url", "image", "dataset_version", "emotion_event", "url_outcome",
                  "validation_result"):  # fmt: skip
        assert again[table] == counts[table], (table, counts, again)
    assert again["training_run"] == 2
    versions, _ = _registry(project)
    assert versions == ["1", "2"]
    status = subprocess.run(
        # The data stages the demo versions (validate/train/evaluate are `dvc repro` runs).
        [str(Path(sys.executable).with_name("dvc")), "status", "split"],
        cwd=project, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "up to date" in status.stdout


def test_demo_with_an_empty_image_folder_fails_clearly(tmp_path: Path) -> None:
    project = make_tiny_project(tmp_path / "project")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _demo(project, "--images", str(empty))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(empty) in result.stderr.replace("\n", "")
