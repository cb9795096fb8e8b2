"""Two rulers: the same predictions scored on the original labels and on the FER+ majority
labels of the same faces (split.csv's `votes`), faces without a majority left out and
counted, and no ruler at all (not zeros) when the data carries no votes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from emotionops.dataset.votes import (
    VoteTableError,
    encode_votes,
    majority_indices,
    split_votes,
)
from emotionops.training.evaluate import (
    EvalSet,
    EvaluationError,
    evaluate_probs,
    ferplus_score,
    resolve_ruler,
    ruled_set,
    write_evaluation,
)

LABELS = ["happy", "sad", "surprise"]
#: Six faces: folder labels, FER+ votes, and the model's predictions (one-hot below).
Y_ORIGINAL = np.array([0, 0, 1, 1, 2, 2])
VOTES = [
    {"happy": 9, "sad": 1},  # majority happy
    {"sad": 7, "happy": 3},  # majority sad: the folder label was wrong
    {"sad": 10},  # sad
    {"happy": 4, "sad": 4, "-": 2},  # no class over half: left out
    {"surprise": 6, "contempt": 4},  # surprise
    {"contempt": 8, "surprise": 2},  # majority outside the label set: left out
]
Y_PRED = np.array([0, 1, 1, 0, 2, 0])


def onehot_predictor(pred: np.ndarray):
    def predict(x: np.ndarray) -> np.ndarray:
        probs = np.zeros((len(x), len(LABELS)), np.float32)
        probs[np.arange(len(x)), pred[: len(x)]] = 1.0
        return probs

    return predict


def images(n: int) -> np.ndarray:
    return np.zeros((n, 8, 8, 1), np.uint8)


def test_majority_indices_follow_the_ferplus_protocol() -> None:
    assert majority_indices(VOTES, LABELS).tolist() == [0, 1, 1, -1, 2, -1]
    assert majority_indices([None, {}], LABELS).tolist() == [-1, -1]


def test_known_predictions_give_exact_metrics_on_both_rulers() -> None:
    result = evaluate_probs(
        onehot_predictor(Y_PRED), images(6), Y_ORIGINAL, LABELS, flip_check=False, votes=VOTES
    )
    # original: right on faces 0, 2, 4 (face 1 "wrong" by its folder label)
    assert result.accuracy == pytest.approx(3 / 6)
    fp = result.ferplus
    assert fp is not None and result.ferplus_left_out == 2
    # ferplus: faces 0, 1, 2, 4 with truth happy, sad, sad, surprise; predicted 0, 1, 1, 2
    assert fp.n_images == 4 and fp.accuracy == 1.0 and fp.macro_f1 == 1.0
    assert fp.confusion == [[1, 0, 0], [0, 2, 0], [0, 0, 1]]
    metrics = result.metrics("test_")
    assert metrics["test_accuracy"] == pytest.approx(0.5)  # the original ruler keeps its name
    assert metrics["test_ferplus_accuracy"] == 1.0
    assert metrics["test_ferplus_macro_f1"] == 1.0
    assert metrics["test_ferplus_n"] == 4.0 and metrics["test_ferplus_left_out"] == 2.0
    assert {k for k in metrics if k.startswith("test_ferplus_") and k.endswith("_recall")} == {
        f"test_ferplus_{label}_recall" for label in LABELS
    }


def test_the_ferplus_ruler_counts_the_models_mistakes() -> None:
    pred = np.array([1, 0, 1, 0, 2, 0])  # wrong on faces 0 and 1 by the crowd
    fp, left_out = ferplus_score(pred, VOTES, LABELS)
    assert fp is not None and left_out == 2
    assert fp.accuracy == pytest.approx(2 / 4)
    assert fp.confusion == [[0, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert fp.per_class["sad"]["recall"] == pytest.approx(0.5)
    assert fp.per_class["happy"]["recall"] == 0.0
    # F1: happy 0, sad 0.5 (p 0.5, r 0.5), surprise 1 -> mean 0.5
    assert fp.macro_f1 == pytest.approx(0.5)


def test_no_votes_means_no_ferplus_ruler_not_zeros(tmp_path: Path) -> None:
    result = evaluate_probs(
        onehot_predictor(Y_PRED), images(6), Y_ORIGINAL, LABELS, flip_check=False
    )
    assert result.ferplus is None
    assert not any("ferplus" in k for k in result.metrics("test_"))
    assert ferplus_score(Y_PRED, [None] * 6, LABELS) == (None, 0)
    write_evaluation(tmp_path, result)
    assert not list(tmp_path.glob("ferplus_*"))
    assert "ferplus" not in json.loads((tmp_path / "metrics.json").read_text())


def test_artifacts_keep_the_original_names_and_add_ferplus_files(tmp_path: Path) -> None:
    result = evaluate_probs(
        onehot_predictor(Y_PRED), images(6), Y_ORIGINAL, LABELS, flip_check=False, votes=VOTES
    )
    write_evaluation(tmp_path, result)
    for name in ("confusion_matrix.csv", "per_class_metrics.json"):  # the warehouse reads these
        assert (tmp_path / name).is_file() and (tmp_path / f"ferplus_{name}").is_file()
    with (tmp_path / "ferplus_confusion_matrix.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["true\\predicted", *LABELS] and rows[2] == ["sad", "0", "2", "0"]
    original = json.loads((tmp_path / "per_class_metrics.json").read_text())
    assert original["sad"]["support"] == 2.0  # the folder labels
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["accuracy"] == pytest.approx(0.5)
    assert summary["ferplus"]["accuracy"] == 1.0
    assert (summary["ferplus"]["n_images"], summary["ferplus"]["left_out"]) == (4, 2)


def write_split(path: Path, votes: list[dict[str, int] | None] | None) -> Path:
    fields = ["path", "label", "split", "sha256", *(["votes"] if votes is not None else [])]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for i, y in enumerate(Y_ORIGINAL):
            row = {"path": f"{LABELS[y]}/{i}.png", "label": LABELS[y], "split": "test",
                   "sha256": f"{i:064x}"}  # fmt: skip
            if votes is not None:
                row["votes"] = encode_votes(votes[i])
            writer.writerow(row)
        writer.writerow({"path": "happy/t.png", "label": "happy", "split": "train",
                         "sha256": "f" * 64, **({"votes": '{"sad":9}'} if votes else {})})  # fmt: skip
    return path


def test_split_votes_reads_the_optional_column(tmp_path: Path) -> None:
    with_votes = split_votes(write_split(tmp_path / "a.csv", VOTES), "test")
    assert with_votes["sad/2.png"] == {"sad": 10} and len(with_votes) == 6
    assert "happy/t.png" not in with_votes  # another split
    assert split_votes(write_split(tmp_path / "b.csv", None), "test") == {}
    assert split_votes(write_split(tmp_path / "c.csv", [None] * 6), "test") == {}
    bad = tmp_path / "d.csv"
    bad.write_text("path,label,split,sha256,votes\nx.png,happy,test,0,{oops\n")
    with pytest.raises(VoteTableError, match=r"d\.csv:2: malformed votes"):
        split_votes(bad, "test")


def test_rulers_resolve_and_select_the_faces() -> None:
    voted = EvalSet(images(6), Y_ORIGINAL.astype(np.int32), LABELS, "t", [str(i) for i in range(6)],
                    list(VOTES))  # fmt: skip
    bare = EvalSet(images(6), Y_ORIGINAL.astype(np.int32), LABELS, "bare")
    assert resolve_ruler("auto", voted) == "ferplus"
    assert resolve_ruler("auto", bare) == "original"
    assert resolve_ruler("original", voted) == "original"
    with pytest.raises(EvaluationError, match="ferplus ruler needs votes"):
        resolve_ruler("ferplus", bare)
    with pytest.raises(EvaluationError, match="unknown ruler"):
        resolve_ruler("crowd", voted)
    same, none_out = ruled_set(voted, "original")
    assert same is voted and none_out == 0
    ruled, left_out = ruled_set(voted, "ferplus")
    assert left_out == 2 and ruled.paths == ["0", "1", "2", "4"]
    assert ruled.labels.tolist() == [0, 1, 1, 2]
