"""Vote tables (FER+ and generic CSVs): reading, bad rows named, majority and distribution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emotionops.dataset.votes import (
    VoteTableError,
    check_files,
    decode_votes,
    encode_votes,
    majority,
    read_vote_table,
    vote_distribution,
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
    a = votes.counts("train/happy/a.png")
    assert a == {"neutral": 1, "happy": 8, "-": 1}
    assert decode_votes(encode_votes(a)) == a and encode_votes(None) == ""
    assert majority(a, LABELS4) == "happy"
    assert vote_distribution(a, LABELS4).tolist() == [1.0, 0.0, 0.0, 0.0]  # single votes dropped
    b = votes.counts("train/sad/b.png")
    assert majority(b, LABELS4) is None  # 4 v 4 of 10
    assert vote_distribution(b, LABELS4).tolist() == [0.0, 0.5, 0.0, 0.5]  # unknown left out
    c = votes.counts("train/angry/c.png")
    assert majority(c, LABELS4) is None and majority(c, list(FER2013_LABELS)) == "angry"
    assert vote_distribution(c, LABELS4) is None  # no vote in the label set: dropped
    d = votes.counts("train/sad/d.png")
    assert majority(d, LABELS4) is None and vote_distribution(d, LABELS4) is None
    assert votes.counts("nope.png") is None
    with pytest.raises(VoteTableError, match="malformed votes"):
        decode_votes('{"happy": -1}')


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
    assert votes.counts("p/1.png") == {"happy": 4}  # joy and happy both count for happy
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
            top = majority(votes.counts(file), labels)
            if top is not None:
                total += 1
                agree += top == file.split("/")[1]
    assert total > 3000
    assert np.isclose(agree / total, 0.673, atol=0.01)
