"""`emotionops import | split | evaluate | train` as a user meets them: a summary on success,
one clear line (exit 2, no traceback) for bad input, bad params and missing pieces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EMOTIONOPS = Path(sys.executable).with_name("emotionops")
REPO = Path(__file__).resolve().parents[2]


def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTIONOPS_")}
    env |= {"EMOTIONOPS_PROJECT_DIR": str(project), "COLUMNS": "200"}
    return subprocess.run(
        [str(EMOTIONOPS), *args], cwd=project, env=env, capture_output=True, text=True, timeout=180
    )


def clear_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    flat = " ".join(result.stderr.split())
    for needle in needles:
        assert needle in flat, flat


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    return tmp_path


def faces(root: Path, counts: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(30, 220, (48, 48), dtype=np.uint8)).save(
                root / cls / f"{i}.png"
            )
    return root


def test_import_clean_split_then_stats_table(project: Path, tmp_path: Path) -> None:
    src = faces(tmp_path / "Some Dataset", {"happy": 6, "sad": 6, "surprise": 6, "neutral": 6})
    result = run(project, "import", str(src))
    assert result.returncode == 0, result.stderr
    assert "some-dataset: 24 images" in " ".join(result.stderr.split())
    assert (project / "data" / "imports" / "some-dataset.csv").is_file()
    assert run(project, "clean").returncode == 0
    split = run(project, "split")
    assert split.returncode == 0, split.stderr
    lines = split.stdout.splitlines()
    assert lines[0].split() == ["label", "train", "val", "test", "total", "share"]
    assert lines[-1].split()[0] == "all" and lines[-1].split()[-1] == "24"


def test_import_errors_are_one_line(project: Path, tmp_path: Path) -> None:
    src = faces(tmp_path / "src", {"happy": 2, "bored": 2})
    clear_error(run(project, "import", str(src)), "class 'bored' is not in labels", "label_map")
    clear_error(run(project, "import"), "nothing to import", "dataset.sources")
    clear_error(run(project, "import", str(src), "--split", "half"), "--split must be one of")
    clear_error(run(project, "import", str(src), "--name", "Bad Name!"), "--name")
    bad = tmp_path / "fer.csv"
    bad.write_text("emotion,pixels,Usage\n3,1 2 3,Training\n")
    clear_error(run(project, "import", str(bad)), "fer.csv:2: pixels has 3 values")
    assert not (project / "data" / "imports").exists()


def test_params_out_of_range_name_the_key(project: Path) -> None:
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("  epochs: 60 ", "  epochs: 0 ", 1))
    clear_error(run(project, "train"), "train.epochs", "greater than or equal to 1")
    params.write_text((REPO / "params.yaml").read_text().replace("balance: none", "balance: up"))
    clear_error(run(project, "split"), "train.balance must be one of")


def test_evaluate_and_train_without_data_fail_clearly(project: Path) -> None:
    clear_error(
        run(project, "evaluate", "--model", str(project / "missing.keras")), "no such model file"
    )
    clear_error(run(project, "evaluate", "--input-scale", "wide"), "--input-scale must be")
    clear_error(
        run(project, "evaluate", "--model", "models:/x@champion"), "needs an MLflow tracking URI"
    )


def test_evaluate_a_model_file_on_a_labelled_folder(project: Path, tmp_path: Path) -> None:
    """Folder classes map through params (label_map, ignore), the per-class table and the
    summary reach the user, the artifacts land in --out; a split layout is refused."""
    import json

    from emotionops.training.models import build_model

    labels = ["happy", "sad", "surprise", "neutral"]
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    build_model("small_cnn", 48, 4, seed=1, width=0.5).save(model_dir / "model.keras")
    (model_dir / "labels.json").write_text(json.dumps({"labels": labels, "image_size": 48}))
    params = project / "params.yaml"
    params.write_text(
        params.read_text().replace("label_map: {}", "label_map: {surprised: surprise}")
    )
    data = faces(tmp_path / "external", {"happy": 3, "Surprised": 2, "angry": 4})

    result = run(project, "evaluate", "--model", str(model_dir), "--data", str(data),
                 "--out", str(tmp_path / "report"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    assert (
        rows["happy"][-1] == "3" and rows["surprise"][-1] == "2"
    )  # angry ignored, Surprised mapped
    assert "5 images, accuracy" in result.stdout and "flip consistency" in result.stdout
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["n_images"] == 5
    assert (tmp_path / "report" / "confusion_matrix.png").is_file()

    layout = tmp_path / "layout"
    faces(layout / "train", {"happy": 1})
    faces(layout / "test", {"happy": 1})
    clear_error(run(project, "evaluate", "--model", str(model_dir), "--data", str(layout)),
                "holds split folders (test, train)", "/test")  # fmt: skip
