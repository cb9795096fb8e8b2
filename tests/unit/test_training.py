"""Training stage, fast parts: data contract and errors, the even-batch guard, the model zoo,
the TFLite export. The odd-batch training runs in a subprocess: TF 2.21 + oneDNN segfaults
in a strided 1x1 Conv2D, and a segfault must fail a test, not kill pytest."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from _factories import write_bar_faces
from emotionops.training.data import TrainingDataError, even_batch_size, make_datasets

LABELS = ["happy", "sad", "surprise"]


def make_faces(root: Path, counts: dict[str, int], size: int = 48, seed: int = 0) -> Path:
    return write_bar_faces(root, counts, LABELS, size, seed)


# The even-batch guard ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("requested", "n", "expected"), [(32, 7, 6), (32, 33, 32), (32, 2, 2), (6, 100, 6), (8, 3, 2)]
)
def test_even_batch_size(requested: int, n: int, expected: int) -> None:
    assert even_batch_size(requested, n) == expected


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_training_images_is_a_clear_error(tmp_path: Path, n: int) -> None:
    split_csv = make_faces(tmp_path, {"train": n, "test": 2})
    with pytest.raises(TrainingDataError, match="at least 2"):
        make_datasets(split_csv, tmp_path, LABELS, 48, 32, seed=1)


@pytest.mark.parametrize(("n_train", "batch"), [(7, 32), (33, 32), (13, 4)])
def test_every_training_batch_is_even_and_val_test_keep_every_image(
    tmp_path: Path, n_train: int, batch: int
) -> None:
    split_csv = make_faces(tmp_path, {"train": n_train, "val": 5, "test": 3})
    data = make_datasets(split_csv, tmp_path, LABELS, 48, batch, seed=3, augment=False)
    # One endless stream of full, even batches; `steps_per_epoch` of them make an epoch.
    assert data.steps_per_epoch == n_train // data.train_batch_size
    batches = list(data.train.take(3 * data.steps_per_epoch))
    sizes = [int(x.shape[0]) for x, _ in batches]
    assert sizes == [data.train_batch_size] * len(sizes) and data.train_batch_size % 2 == 0
    # every training image is seen within two passes' worth of batches (reshuffled per pass)
    seen = {np.asarray(x[i]).tobytes() for x, _ in batches for i in range(int(x.shape[0]))}
    assert len(seen) == n_train
    assert sum(int(x.shape[0]) for x, _ in data.val) == 5
    assert sum(int(x.shape[0]) for x, _ in data.test) == 3
    x, y = next(iter(data.test))
    assert x.dtype.name == "float32" and tuple(x.shape[1:]) == (48, 48, 1)
    assert float(np.max(x)) > 200  # raw 0..255 pixels: the model rescales itself
    assert set(np.asarray(y).tolist()) <= {0, 1, 2}


def test_images_are_resized_to_image_size(tmp_path: Path) -> None:
    split_csv = make_faces(tmp_path, {"train": 4, "test": 2}, size=40)
    data = make_datasets(split_csv, tmp_path, LABELS, 64, 4, seed=1)
    x, _ = next(iter(data.train))
    assert tuple(x.shape[1:]) == (64, 64, 1)


ODD_BATCH_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import keras
    from emotionops.training.data import make_datasets
    from emotionops.training.models import build_model

    for root in map(Path, sys.argv[1:]):
        data = make_datasets(root / "split.csv", root, ["happy", "sad", "surprise"], 48, 32, seed=5)
        keras.utils.set_random_seed(5)
        model = build_model("small_cnn", 48, 3, seed=5)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        history = model.fit(
            data.train, validation_data=data.val, epochs=1, steps_per_epoch=data.steps_per_epoch,
            verbose=0,
        )
        print("TRAINED", data.count("train"), len(history.history["loss"]), flush=True)
    """
)


@pytest.mark.slow
def test_training_on_odd_sized_splits_does_not_crash(tmp_path: Path) -> None:
    """7 and 33 images with batch 32 give odd batches, which segfault TF 2.21 + oneDNN in a
    strided 1x1 Conv2D (verified on Intel with AMX: a plain model.fit with those batches dies
    with SIGSEGV/SIGABRT; on AMD EPYC every batch size does). small_cnn's shortcut is built
    without that layer, and the split keeps batches even. Run with oneDNN on, in a
    subprocess, so a crash fails this test. One subprocess for both sizes: TensorFlow's
    import alone takes ~15 s."""
    roots = []
    for n_train in (7, 33):
        root = tmp_path / f"n{n_train}"
        make_faces(root, {"train": n_train, "val": 3, "test": 3})
        roots.append(str(root))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)  # keep oneDNN on: that is where the crash lives
    proc = subprocess.run(
        [sys.executable, "-c", ODD_BATCH_SCRIPT, *roots],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert proc.stdout.split("\n")[:2] == ["TRAINED 7 1", "TRAINED 33 1"]


# Data contract errors ------------------------------------------------------------------------
def test_unknown_label_names_the_line_and_the_label_set(tmp_path: Path) -> None:
    split_csv = make_faces(tmp_path, {"train": 4, "test": 2})
    with split_csv.open("a", newline="") as fh:
        csv.writer(fh).writerow(["happy/train_000.png", "angry", "train", "0" * 64])
    with pytest.raises(TrainingDataError, match=r"split\.csv:8: label 'angry' is not in"):
        make_datasets(split_csv, tmp_path, LABELS, 48, 4, seed=1)


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    split_csv = make_faces(tmp_path, {"train": 4, "test": 2})
    bad = tmp_path / "sad" / "train_001.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated PNG
    with pytest.raises(TrainingDataError, match=r"sad/train_001\.png: cannot decode"):
        make_datasets(split_csv, tmp_path, LABELS, 48, 4, seed=1)


def test_missing_image_names_the_file(tmp_path: Path) -> None:
    split_csv = make_faces(tmp_path, {"train": 4, "test": 2})
    (tmp_path / "sad" / "test_001.png").unlink()
    with pytest.raises(TrainingDataError, match=r"sad/test_001\.png: image file .* not exist"):
        make_datasets(split_csv, tmp_path, LABELS, 48, 4, seed=1)


def test_bad_split_and_missing_columns(tmp_path: Path) -> None:
    split_csv = make_faces(tmp_path, {"train": 4, "test": 2})
    text = split_csv.read_text().replace(",test,", ",holdout,", 1)
    split_csv.write_text(text)
    with pytest.raises(TrainingDataError, match="split 'holdout' is not one of"):
        make_datasets(split_csv, tmp_path, LABELS, 48, 4, seed=1)
    split_csv.write_text("file,label\nx.png,happy\n")
    with pytest.raises(TrainingDataError, match=r"missing column\(s\) \['path', 'split'\]"):
        make_datasets(split_csv, tmp_path, LABELS, 48, 4, seed=1)


# Model zoo -------------------------------------------------------------------------------------
@pytest.mark.parametrize("side", [48, 47, 5])
def test_strided_pointwise_equals_a_strided_1x1_conv(side: int) -> None:
    """The crash-free shortcut computes what the strided 1x1 Conv2D it replaces computes."""
    import keras

    from emotionops.training.models import strided_pointwise

    x = np.random.default_rng(side).normal(size=(3, side, side, 8)).astype(np.float32)
    inputs = keras.Input((side, side, 8))
    ours = keras.Model(inputs, strided_pointwise(inputs, 16, 2, "s", "glorot_uniform"))
    plain = keras.layers.Conv2D(16, 1, strides=2, padding="same", use_bias=False)
    plain.build(x.shape)
    plain.set_weights(ours.get_layer("s_conv").get_weights())
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(plain(x)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", [48, 64])
def test_small_cnn_builds_and_outputs_probabilities(size: int) -> None:
    import keras

    from emotionops.training.models import build_model

    model = build_model("small_cnn", size, 4, seed=1)
    assert model.input_shape == (None, size, size, 1)
    assert model.output_shape == (None, 4)
    assert isinstance(model.layers[1], keras.layers.Rescaling)
    strided_1x1 = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D)
        and layer.kernel_size == (1, 1)
        and layer.strides != (1, 1)
    ]
    assert not strided_1x1, "a strided 1x1 Conv2D crashes oneDNN in training"
    assert [layer.name for layer in model.layers if layer.name.endswith("_shortcut_subsample")]
    assert model.count_params() < 500_000
    probs = np.asarray(model(np.full((2, size, size, 1), 128.0, np.float32), training=False))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_same_seed_same_weights() -> None:
    from emotionops.training.models import build_model

    a, b = build_model("small_cnn", 48, 3, seed=7), build_model("small_cnn", 48, 3, seed=7)
    c = build_model("small_cnn", 48, 3, seed=8)
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_unknown_model_lists_the_known_ones() -> None:
    from emotionops.training.models import ModelConfigError, build_model

    with pytest.raises(
        ModelConfigError,
        match="unknown model 'resnet9000'; known models: mobilenet_v2, resnet50, small_cnn",
    ):
        build_model("resnet9000", 48, 4, seed=1)


# Export and evaluation helpers -----------------------------------------------------------------
def test_tflite_export_matches_keras(tmp_path: Path) -> None:
    from emotionops.training.export import export_tflite, tflite_parity, tflite_predict
    from emotionops.training.models import build_model

    model = build_model("small_cnn", 48, 3, seed=2)
    path = export_tflite(model, tmp_path / "tflite", LABELS, 48)
    assert path.name == "model.tflite" and path.stat().st_size > 10_000
    meta = json.loads((tmp_path / "tflite" / "labels.json").read_text())
    assert meta == {
        "labels": LABELS,
        "image_size": 48,
        "input": "float32 [N,48,48,1] raw pixel values 0..255",
    }
    x = np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 1)).astype(np.float32)
    assert tflite_parity(model, path, x) < 1e-4
    assert tflite_predict(path, x).shape == (4, 3)


def test_per_class_metrics_from_a_known_confusion_matrix() -> None:
    from emotionops.training.evaluate import confusion_matrix, per_class_metrics

    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 0])
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    m = per_class_metrics(cm, LABELS)
    assert m["happy"]["precision"] == pytest.approx(2 / 3)
    assert m["happy"]["recall"] == pytest.approx(2 / 3)
    assert m["happy"]["specificity"] == pytest.approx(2 / 3)  # tn=2 (rows 1,2 cols 1,2), fp=1
    assert m["sad"]["f1"] == pytest.approx(0.8)
    assert m["surprise"] == {
        "precision": 0.0,
        "recall": 0.0,
        "specificity": 1.0,
        "f1": 0.0,
        "support": 1.0,
    }
