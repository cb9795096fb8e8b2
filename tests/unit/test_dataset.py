"""Deterministic split by content hash and the dataset version id."""

from __future__ import annotations

import hashlib

import pytest

from emotionops.dataset.split import DatasetError, assign_split, build_split, stats, write_split
from emotionops.params import SplitParams


def _rows(n: int, labels=("happy", "sad")) -> list[dict]:
    return [
        {
            "sha256": hashlib.sha256(str(i).encode()).hexdigest(),
            "label": labels[i % len(labels)],
            "status": "accepted",
            "face_path": f"{labels[i % len(labels)]}/{i}.png",
        }
        for i in range(n)
    ]


def test_split_fractions_are_close_to_params() -> None:
    params = SplitParams(test_fraction=0.2, val_fraction=0.1)
    counts = stats(build_split(_rows(4000), params, ["happy", "sad"]))
    assert abs(counts.count("test") / 4000 - 0.2) < 0.03
    assert abs(counts.count("val") / 4000 - 0.1) < 0.03


def test_adding_images_never_moves_an_existing_image() -> None:
    params = SplitParams()
    labels = ["happy", "sad"]
    before = {r["sha256"]: r["split"] for r in build_split(_rows(300), params, labels)}
    after = {r["sha256"]: r["split"] for r in build_split(_rows(600), params, labels)}
    assert all(after[sha] == split for sha, split in before.items())


def test_salt_changes_the_split() -> None:
    sha = hashlib.sha256(b"x").hexdigest()
    splits = {assign_split(sha, SplitParams(salt=f"s{i}")) for i in range(50)}
    assert splits == {"train", "val", "test"}


def test_rejected_and_unknown_labels_are_left_out(tmp_path) -> None:
    rows = _rows(10)
    rows[0]["status"] = "rejected"
    rows[1]["label"] = "bored"
    split = build_split(rows, SplitParams(), ["happy", "sad"])
    assert len(split) == 8
    v1 = write_split(split, tmp_path / "split.csv")
    v2 = write_split(split, tmp_path / "again.csv")
    assert v1 == v2 and len(v1) == 16  # version id depends on content only


def test_no_accepted_images_is_a_clear_error() -> None:
    with pytest.raises(DatasetError, match="no accepted face images"):
        build_split([], SplitParams(), ["happy", "sad"])


# Growth stability with near-duplicate groups and split hints --------------------------------
def _hashed_rows(n: int, seed: int, start: int = 0) -> list[dict]:
    """Rows with random 64-bit hashes; every 5th row is a near duplicate (2 bits off) of
    an earlier row, so groups form and grow as rows are added."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = _rows(start + n)[start:]
    for k, row in enumerate(rows):
        ph, dh = int(rng.integers(0, 2**63)), int(rng.integers(0, 2**63))
        if k % 5 == 4:  # near duplicate of the row before
            ph, dh = int(rows[k - 1]["phash"], 16) ^ 0b11, int(rows[k - 1]["dhash"], 16) ^ 0b1
        row["phash"], row["dhash"] = f"{ph:016x}", f"{dh:016x}"
    return rows


def test_adding_near_duplicates_never_moves_a_test_image_out_of_test() -> None:
    params = SplitParams(test_fraction=0.3, val_fraction=0.2)
    labels = ["happy", "sad"]
    old = _hashed_rows(300, seed=1)
    before = {r["sha256"]: r["split"] for r in build_split(old, params, labels, (6, 6))}
    # New images, many of them near duplicates of OLD ones (which must keep their groups held out).
    new = _hashed_rows(300, seed=2, start=300)
    for k in range(0, 300, 3):
        new[k]["phash"] = f"{int(old[k]['phash'], 16) ^ 0b100:016x}"
        new[k]["dhash"] = f"{int(old[k]['dhash'], 16) ^ 0b100:016x}"
    after = {r["sha256"]: r["split"] for r in build_split(old + new, params, labels, (6, 6))}
    moved = [(before[s], after[s]) for s in before if after[s] != before[s]]
    assert moved, "the new near duplicates should have pulled some old images into held-out sets"
    assert all(b != "test" for b, _ in moved), moved  # an old test image stays in test
    assert all(a != "train" for _, a in moved), moved  # moves only go towards held-out sets


def test_near_duplicates_never_straddle_splits() -> None:
    from emotionops.dataset.split import near_duplicate_groups

    rows = [r for r in _hashed_rows(400, seed=3)]
    split = build_split(rows, SplitParams(test_fraction=0.3), ["happy", "sad"], (6, 6))
    where = {r["sha256"]: r["split"] for r in split}
    groups = near_duplicate_groups(rows, 6, 6)
    assert groups
    for group in groups:
        assert len({where[rows[i]["sha256"]] for i in group}) == 1


def test_split_hints_official_splits() -> None:
    rows = _rows(600)
    hints = {r["sha256"]: "trainval" for r in rows[:400]}
    hints |= {r["sha256"]: "test" for r in rows[400:500]}
    params = SplitParams(test_fraction=0.2, val_fraction=0.1)
    split = {
        r["sha256"]: r["split"] for r in build_split(rows, params, ["happy", "sad"], None, hints)
    }
    trainval = [split[r["sha256"]] for r in rows[:400]]
    assert "test" not in trainval
    assert 0.05 < trainval.count("val") / 400 < 0.22  # 0.1 / (1 - 0.2) = 12.5 %
    assert {split[r["sha256"]] for r in rows[400:500]} == {"test"}
    assert {split[r["sha256"]] for r in rows[500:]} == {"train", "val", "test"}
    with pytest.raises(DatasetError, match="unknown split hint"):
        assign_split("ab", params, "holdout")


def test_trainval_image_near_duplicating_a_test_image_is_left_out() -> None:
    rows = _hashed_rows(10, seed=4)
    rows[1]["phash"], rows[1]["dhash"] = rows[0]["phash"], rows[0]["dhash"]
    hints = {rows[0]["sha256"]: "test", rows[1]["sha256"]: "trainval"}
    split = build_split(rows, SplitParams(), ["happy", "sad"], (6, 6), hints)
    shas = {r["sha256"]: r["split"] for r in split}
    assert shas[rows[0]["sha256"]] == "test" and rows[1]["sha256"] not in shas
    assert len(split) == 9


def test_stats_summary_and_table(tmp_path) -> None:
    import json

    from emotionops.dataset.split import format_stats, stats_summary, write_stats

    split = [
        {"label": "happy", "split": "train"},
        {"label": "happy", "split": "test"},
        {"label": "sad", "split": "train"},
        {"label": "sad", "split": "val"},
    ]
    summary = stats_summary(split, ["happy", "sad", "surprise"])
    assert summary["total"] == 4 and (summary["train"], summary["val"], summary["test"]) == (
        2,
        1,
        1,
    )
    assert summary["labels"]["happy"] == {"train": 1, "val": 0, "test": 1, "total": 2, "share": 0.5}
    assert summary["labels"]["surprise"]["total"] == 0  # an empty label is shown, not hidden
    path = write_stats(summary, tmp_path / "stats.json")
    assert json.loads(path.read_text()) == summary
    table = format_stats(summary)
    assert table.splitlines()[1].split() == ["happy", "1", "0", "1", "2", "50.0%"]


def test_dvc_output_hashes_read_from_dvc_lock_unless_it_is_stale(tmp_path) -> None:
    import hashlib

    from emotionops.dataset.dvc import dvc_output_hashes

    assert dvc_output_hashes(tmp_path) == {}
    split = tmp_path / "data" / "split.csv"
    split.parent.mkdir()
    split.write_text("path,label,split,sha256\n")
    md5 = hashlib.md5(split.read_bytes()).hexdigest()
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  split:\n    cmd: emotionops split\n    outs:\n"
        f"    - path: data/split.csv\n      md5: {md5}\n  clean:\n    outs:\n"
        "    - path: data/faces\n      md5: def456.dir\n    - path: data/images.csv\n      md5: x\n"
    )
    assert dvc_output_hashes(tmp_path) == {"data/split.csv": md5, "data/faces": "def456.dir"}
    split.write_text("path,label,split,sha256\nfaces/a.png,happy,train,00\n")  # split again
    assert dvc_output_hashes(tmp_path) == {}
    split.unlink()
    assert dvc_output_hashes(tmp_path) == {}
