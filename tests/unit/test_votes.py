"""Vote tables (FER+ and generic CSVs): reading, bad rows named, majority and distribution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emotionops.dataset.votes import (
    VoteTableError,
    check_files,
    distribution,
    kept_votes,
    majority_label,
    read_vote_table,
)
from emotionops.params import FER2013_LABELS

KNOWN = [*FER2013_LABELS, "contempt"]
FERPLUS_HEADER = (
    "split,file,ferplus_name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,"
    "unknown,NF"
)
LABELS4 = ["happy", "sad", "surprise", "neutral"]


def table(tmp_path: Path, *rows: str, header: str = FERPLUS_HEADER) -> Path:
    path = tmp_path / "votes.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_ferplus_majority_and_distribution(tmp_path: Path) -> None:
    path = table(
        tmp_path,
        "train,train/happy/a.png,a.png,1,8,0,0,0,0,0,0,1,0",  # happy; single votes dropped
        "train,train/sad/b.png,b.png,4,0,0,4,0,0,0,0,2,0",  # 4 v 4 of 10: no majority
        "train,train/angry/c.png,c.png,0,0,0,0,9,0,0,0,1,0",  # angry: outside 4 labels
        "train,train/sad/d.png,d.png,0,0,0,0,0,0,0,0,3,7",  # not a face
    )
    votes = read_vote_table(path, KNOWN)
    assert set(votes.votes) == {"train/happy/a.png", "train/sad/b.png", "train/angry/c.png",
                                "train/sad/d.png"}  # fmt: skip
    a = votes.label_votes("train/happy/a.png", LABELS4)
    assert a.tolist() == [8, 0, 0, 0]
    assert majority_label(a, kept_votes(votes, "train/happy/a.png")) == 0
    b = votes.label_votes("train/sad/b.png", LABELS4)
    assert majority_label(b, kept_votes(votes, "train/sad/b.png")) is None
    assert distribution(b).tolist() == [0.0, 0.5, 0.0, 0.5]  # unknown is not an emotion
    c = votes.label_votes("train/angry/c.png", LABELS4)
    assert majority_label(c, kept_votes(votes, "train/angry/c.png")) is None
    assert distribution(c) is None  # no vote in the label set: dropped
    assert distribution(votes.label_votes("train/sad/d.png", LABELS4)) is None
    assert votes.label_votes("nope.png", LABELS4) is None


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ("train,x.png,x,1,a,0,0,0,0,0,0,0,0", "'a' is not a vote count"),
        ("train,x.png,x,1,-2,0,0,0,0,0,0,0,0", "'-2' is not a vote count"),
        ("train,x.png,x,0,0,0,0,0,0,0,0,0,0", "no votes"),
        ("train,,x,1,2,0,0,0,0,0,0,0,0", "no file name"),
    ],
)
def test_a_bad_row_is_named_or_skipped(tmp_path: Path, row: str, why: str) -> None:
    path = table(tmp_path, "train,ok.png,ok,0,9,0,0,0,0,0,0,1,0", row)
    with pytest.raises(VoteTableError, match=f"row 3.*{why}"):
        read_vote_table(path, KNOWN)
    votes = read_vote_table(path, KNOWN, skip_bad=True)
    assert list(votes.votes) == ["ok.png"] and len(votes.skipped) == 1 and why in votes.skipped[0]


def test_a_generic_table_maps_its_classes(tmp_path: Path) -> None:
    path = table(tmp_path, "p/1.png,3,1,0", header="file,joy,happy,meh")
    with pytest.raises(VoteTableError, match=r"\['joy', 'meh'\].*nor mapped"):
        read_vote_table(path, KNOWN)
    with pytest.raises(VoteTableError, match="unknown labels"):
        read_vote_table(path, KNOWN, {"joy": "ecstatic", "meh": None})
    votes = read_vote_table(path, KNOWN, {"joy": "happy", "meh": None})
    assert votes.label_votes("p/1.png", LABELS4).tolist() == [3, 0, 0, 0]  # single vote dropped
    with pytest.raises(VoteTableError, match="not in the imported folder"):
        check_files(votes, ["p/2.png"])
    assert check_files(votes, ["p/2.png"], skip_bad=True) == ["p/1.png"]


def test_ferplus_table_agrees_with_the_published_figure(real_data: Path) -> None:
    """On publictest, FER+'s majority agrees with FER2013's label on ~67% (data README)."""
    votes = read_vote_table(real_data / "fer2013" / "ferplus.csv", KNOWN)
    labels = list(FER2013_LABELS)
    agree = total = 0
    for file in votes.votes:
        if file.startswith("publictest/"):
            top = majority_label(votes.label_votes(file, labels), kept_votes(votes, file))
            if top is not None:
                total += 1
                agree += labels[top] == file.split("/")[1]
    assert total > 3000 and 0.64 < agree / total < 0.70
    assert np.isclose(agree / total, 0.673, atol=0.01)
