"""Deterministic split by content hash and the dataset version id."""

from __future__ import annotations

import hashlib

import pytest

from emotionops.dataset import DatasetError, assign_split, build_split, stats, write_split
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
