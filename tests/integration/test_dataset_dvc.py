"""The DVC pipeline (dvc.yaml) end to end on a tiny generated project: import -> clean ->
split -> validate (GX) -> train -> evaluate; `dvc repro` skips what did not change,
`dvc exp run -S train.epochs=2` re-runs only train and evaluate, `dvc metrics diff` and
`dvc plots show` compare the runs. Real DVC, git, MLflow server; ~3 minutes (TensorFlow is
imported by each train/evaluate stage process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _project import make_tiny_project

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent
LABELS = ["happy", "sad", "surprise", "neutral"]


def run(project: Path, env: dict[str, str], *cmd: str) -> str:
    proc = subprocess.run(
        [*cmd], cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout + proc.stderr


def generated_faces(root: Path, per_label: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for k, label in enumerate(LABELS):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            img = rng.integers(40, 120, (48, 48), dtype=np.uint8)
            img[k * 12 + 3 : k * 12 + 9, :] = 230  # the class is the row of a bright bar
            Image.fromarray(img).save(root / label / f"{i}.png")
    return root


@pytest.fixture
def project(tmp_path: Path, mlflow_server: str) -> tuple[Path, dict[str, str]]:
    project = make_tiny_project(tmp_path / "project")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTIONOPS_")}
    env |= {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "EMOTIONOPS_PROJECT_DIR": str(project),
        "EMOTIONOPS_MLFLOW_TRACKING_URI": mlflow_server,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    run(project, env, "git", "init", "-q")
    run(project, env, str(BIN / "dvc"), "init", "-q")
    source = generated_faces(tmp_path / "source")
    out = run(project, env, str(BIN / "emotionops"), "import", str(source), "--name", "gen")
    assert "gen: 64 images" in out
    (project / "data" / "downloads").mkdir()  # nothing scraped: imports only
    run(project, env, "git", "add", "-A")
    run(project, env, "git", "commit", "-qm", "project")
    return project, env


def test_repro_skips_unchanged_stages_and_experiments_compare(project) -> None:
    project, env = project
    dvc = str(BIN / "dvc")
    first = run(project, env, dvc, "repro")
    for stage in ("clean", "split", "validate", "train", "evaluate"):
        assert f"Running stage '{stage}'" in first, stage
    stats = json.loads((project / "data" / "dataset_stats.json").read_text())
    assert stats["total"] == 64 and set(stats["labels"]) == set(LABELS)
    assert "validation images: passed" in (project / "data" / "validation.txt").read_text()
    model_dir = project / "data" / "model"
    assert {"model.keras", "model.tflite", "labels.json"} <= {p.name for p in model_dir.iterdir()}
    train_metrics = json.loads((project / "data" / "metrics" / "train.json").read_text())
    evaluation = json.loads((project / "data" / "evaluation" / "metrics.json").read_text())
    assert train_metrics["epochs_run"] == 1
    # One evaluation code path: the evaluate stage reproduces train's test accuracy.
    assert evaluation["accuracy"] == pytest.approx(train_metrics["test_accuracy"])
    assert evaluation["n_images"] == stats["test"]

    again = run(project, env, dvc, "repro")
    for stage in ("clean", "split", "validate", "train", "evaluate"):
        assert f"Stage '{stage}' didn't change, skipping" in again, stage

    run(project, env, "git", "add", "-A")
    run(project, env, "git", "commit", "-qm", "baseline run")
    exp = run(project, env, dvc, "exp", "run", "-S", "train.epochs=2")
    for stage in ("clean", "split", "validate"):
        assert f"Stage '{stage}' didn't change, skipping" in exp, stage
    assert "Running stage 'train'" in exp and "Running stage 'evaluate'" in exp

    diff = json.loads(run(project, env, dvc, "metrics", "diff", "--json"))
    epochs = diff["data/metrics/train.json"]["epochs_run"]
    assert (epochs["old"], epochs["new"]) == (1, 2)
    params = json.loads(run(project, env, dvc, "params", "diff", "--json"))
    assert params["params.yaml"]["train.epochs"]["new"] == 2

    run(project, env, dvc, "plots", "show", "-o", "plots")
    html = (project / "plots" / "index.html").read_text()
    assert "val_accuracy" in html and "predicted" in html
