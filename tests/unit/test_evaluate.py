"""Evaluation: metrics, the flip check, artifacts, external folders and model files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotionops.training.evaluate import (
    EPSILON,
    EvaluationError,
    cross_entropy,
    evaluate_probs,
    folder_eval_set,
    load_model,
    normalise_rows,
    write_evaluation,
    write_predictions,
)

LABELS = ["happy", "sad", "surprise"]


def bright_left_predictor(x: np.ndarray) -> np.ndarray:
    """Class 0 when the left half is brighter, else 1: NOT mirror-invariant on purpose."""
    left = x[:, :, : x.shape[2] // 2].mean(axis=(1, 2, 3))
    right = x[:, :, x.shape[2] // 2 :].mean(axis=(1, 2, 3))
    probs = np.zeros((len(x), 3), np.float32)
    probs[np.arange(len(x)), np.where(left > right, 0, 1)] = 1.0
    return probs


def test_metrics_and_flip_consistency_of_a_known_predictor() -> None:
    x = np.zeros((4, 8, 8, 1), np.float32)
    x[0, :, :4] = 200  # left bright -> 0
    x[1, :, 4:] = 200  # right bright -> 1
    x[2, :4] = 200  # symmetric -> 1 (left == right)
    x[3, :, :4] = 200  # left bright -> 0, but it is a 'surprise'
    y = np.array([0, 1, 1, 2])
    ev = evaluate_probs(bright_left_predictor, x, y, LABELS)
    assert ev.accuracy == pytest.approx(0.75)
    assert ev.confusion == [[1, 0, 0], [0, 2, 0], [1, 0, 0]]
    assert ev.per_class["surprise"]["recall"] == 0.0
    assert ev.per_class["happy"]["precision"] == pytest.approx(0.5)
    # Mirroring swaps left/right: images 0, 1 and 3 change their label, the symmetric one not.
    assert ev.flip_consistency == pytest.approx(0.25)
    assert ev.flip_accuracy == pytest.approx(0.25)
    assert ev.predict_images_per_s and ev.predict_images_per_s > 0
    assert ev.metrics("test_")["test_sad_recall"] == 1.0
    assert "y_pred" not in ev.to_dict()
    # One-hot predictions: right faces cost 0, the wrong 'surprise' the clipped -log(1e-7).
    assert ev.loss == pytest.approx(-np.log(EPSILON) / 4)
    assert ev.metrics("test_")["test_loss"] == ev.loss


def test_cross_entropy_is_clipped_and_renormalised_over_the_scored_columns() -> None:
    probs = np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]])
    assert cross_entropy(probs, np.array([0, 1])) == pytest.approx(-(np.log(0.5) + np.log(0.8)) / 2)
    # A zero probability on the true class: finite (clipped), not inf.
    assert cross_entropy(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-np.log(EPSILON))
    # Columns that do not sum to 1 (a subset of a wider model's outputs) are renormalised.
    assert cross_entropy(np.array([[0.3, 0.1]]), np.array([0])) == pytest.approx(-np.log(0.75))


def test_a_wider_model_is_scored_over_the_requested_labels_only() -> None:
    def seven(x: np.ndarray) -> np.ndarray:  # prefers 'angry' (0) but ranks happy > sad
        return np.tile(np.array([0.6, 0.0, 0.0, 0.3, 0.1, 0.0, 0.0], np.float32), (len(x), 1))

    x = np.zeros((2, 8, 8, 1), np.float32)
    ev = evaluate_probs(seven, x, np.array([0, 1]), ["happy", "sad"], columns=[3, 4])
    assert ev.confusion == [[1, 0], [1, 0]]  # argmax over happy/sad only: always happy
    # The loss too: over happy/sad renormalised (0.75 / 0.25), not over the 7 outputs.
    assert ev.loss == pytest.approx(-(np.log(0.75) + np.log(0.25)) / 2)


def test_empty_evaluation_set_is_an_error() -> None:
    with pytest.raises(EvaluationError, match="evaluation set is empty"):
        evaluate_probs(bright_left_predictor, np.zeros((0, 8, 8, 1)), np.array([]), LABELS)


def test_evaluation_artifacts(tmp_path: Path) -> None:
    x = np.zeros((3, 8, 8, 1), np.float32)
    x[0, :, :4] = 200
    ev = evaluate_probs(bright_left_predictor, x, np.array([0, 1, 1]), LABELS)
    out = write_evaluation(tmp_path / "ev", ev)
    names = {p.name for p in out.iterdir()}
    assert {
        "confusion_matrix.csv",
        "confusion_matrix_normalized.csv",
        "confusion_matrix.png",
        "confusion_matrix_normalized.png",
        "per_class_metrics.json",
        "per_class_metrics.csv",
        "metrics.json",
    } <= names
    # The warehouse loader's format: header `true\predicted,<labels>`, one row per true label.
    rows = list(csv.reader((out / "confusion_matrix.csv").open()))
    assert rows[0] == ["true\\predicted", *LABELS] and rows[2] == ["sad", "0", "2", "0"]
    normalised = list(csv.reader((out / "confusion_matrix_normalized.csv").open()))
    assert normalised[1] == ["happy", "1.0", "0.0", "0.0"]
    assert normalised[3] == ["surprise", "0.0", "0.0", "0.0"]  # no support: zeros, not NaN
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == 1.0 and metrics["recall"]["sad"] == 1.0
    assert json.loads((out / "per_class_metrics.json").read_text())["sad"]["support"] == 2.0
    write_predictions(out / "predictions.csv", np.array([0, 1]), np.array([1, 1]), LABELS)
    assert (out / "predictions.csv").read_text().splitlines() == [
        "actual,predicted",
        "happy,sad",
        "sad,sad",
    ]


def test_normalise_rows() -> None:
    cm = np.array([[3, 1], [0, 0]])
    np.testing.assert_allclose(normalise_rows(cm), [[0.75, 0.25], [0.0, 0.0]])


def test_external_folder_is_mapped_like_an_import(tmp_path: Path) -> None:
    for cls, n in (("happy", 3), ("Surprised", 2), ("angry", 2)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.fromarray(np.full((64, 60), 10 * i + 50, np.uint8)).save(
                tmp_path / cls / f"{i}.png"
            )
    ev = folder_eval_set(
        tmp_path,
        LABELS,
        48,
        label_map={"surprised": "surprise"},
        ignore=["angry"],
        limit_per_class=2,
    )
    assert ev.images.shape == (4, 48, 48, 1) and ev.images.dtype == np.uint8
    assert sorted(ev.labels.tolist()) == [0, 0, 2, 2]
    from emotionops.dataset.importers import DatasetImportError

    with pytest.raises(DatasetImportError, match="class 'angry' is not in labels"):
        folder_eval_set(tmp_path, LABELS, 48, label_map={"surprised": "surprise"})


def test_a_split_layout_must_be_evaluated_one_split_at_a_time(tmp_path: Path) -> None:
    """fer2013/ holds train/ and publictest/: scoring both at once would mix training images
    into the figures, so the error names the split folders to choose from."""
    for split in ("train", "publictest"):
        (tmp_path / split / "happy").mkdir(parents=True)
        Image.fromarray(np.full((48, 48), 90, np.uint8)).save(tmp_path / split / "happy" / "0.png")
    with pytest.raises(EvaluationError, match=r"split folders \(publictest, train\).*publictest"):
        folder_eval_set(tmp_path, LABELS, 48)
    assert len(folder_eval_set(tmp_path / "publictest", LABELS, 48).labels) == 1


def test_model_files_keras_and_tflite(tmp_path: Path) -> None:
    from emotionops.training.export import export_tflite
    from emotionops.training.models import build_model

    model = build_model("small_cnn", 48, 3, seed=1, width=0.5)
    folder = tmp_path / "model"
    export_tflite(model, folder, LABELS, 48)
    model.save(folder / "model.keras")
    x = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype(np.float32)
    keras_model = load_model(str(folder))
    assert keras_model.labels == LABELS and keras_model.image_size == 48
    lite = load_model(str(folder / "model.tflite"))
    np.testing.assert_allclose(keras_model.predict(x), lite.predict(x), atol=1e-4)
    assert keras_model.columns_for(["surprise", "happy"]) == [2, 0]
    with pytest.raises(EvaluationError, match=r"has no output for \['neutral'\]"):
        keras_model.columns_for(["happy", "neutral"])

    (folder / "labels.json").unlink()
    with pytest.raises(EvaluationError, match=r"labels\.json missing beside it"):
        load_model(str(folder / "model.tflite"))
    with pytest.raises(EvaluationError, match=r"no labels\.json beside it"):
        load_model(str(folder / "model.keras"))
    assert load_model(str(folder / "model.keras"), model_labels=LABELS).labels == LABELS
    with pytest.raises(EvaluationError, match="no such model file"):
        load_model(str(tmp_path / "nope.keras"))
    with pytest.raises(EvaluationError, match="needs an MLflow tracking URI"):
        load_model("models:/emotion-classifier@champion", None)
