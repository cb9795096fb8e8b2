"""Model zoo (backbones, weights, a pretrained FER model), augmentation, balancing, mixed
precision and the quantised export. Tiny inputs, weights=None or local files, one step:
nothing is downloaded (ImageNet weights are simulated offline by failing Keras' fetch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _factories import fer_like_model, write_bar_faces
from emotionops.params import AugmentParams, TrainParams
from emotionops.training.models import ModelConfigError, build_from_params, build_model

LABELS = ["happy", "sad", "surprise", "neutral"]
FER7 = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Keras' weight download fails as it does without a network (and is never tried)."""
    from keras.src.utils import file_utils

    asked: list[str] = []

    def fail(fname, origin=None, **kwargs):
        asked.append(str(origin))
        raise Exception(
            f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known"
        )

    monkeypatch.setattr(file_utils, "get_file", fail)
    return asked


# Backbones -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50"])
def test_backbones_take_raw_grayscale_and_train_one_step(name: str) -> None:
    import keras

    model = build_model(name, 32, 4, seed=1, weights="none", backbone_size=32)
    assert model.input_shape == (None, 32, 32, 1) and model.output_shape == (None, 4)
    assert {"gray_to_rgb", "preprocess"} <= {layer.name for layer in model.layers}
    # Eager: tracing ResNet50's training graph alone takes ~40 s on 2 cores, eager ~3 s.
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        run_eagerly=True,
    )
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 1)).astype(np.float32)
    before = [w.copy() for w in model.get_weights()]
    # Batch 4: ResNet50's batch statistics at a 1x1 final map are degenerate with 2 images.
    history = model.fit(x, np.array([0, 3, 1, 2]), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)]
    assert sum(changed) > len(changed) // 2  # gradients reached the backbone, not only the head
    probs = np.asarray(model(x, training=False))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_backbone_resizes_to_its_own_input_size() -> None:
    model = build_model("mobilenet_v2", 48, 4, seed=1, weights="none", backbone_size=64)
    assert model.get_layer("resize").output.shape[1:3] == (64, 64)
    (backbone,) = [layer for layer in model.layers if layer.name.startswith("mobilenetv2")]
    assert tuple(backbone.input.shape[1:]) == (64, 64, 3)


def test_mobilenet_preprocessing_maps_pixels_to_minus_one_one() -> None:
    model = build_model("mobilenet_v2", 32, 2, seed=1, weights="none", backbone_size=32)
    pre = model.get_layer("preprocess")
    out = np.asarray(pre(np.array([[[[0.0, 0.0, 0.0]], [[255.0, 255.0, 255.0]]]], np.float32)))
    np.testing.assert_allclose(out.ravel(), [-1, -1, -1, 1, 1, 1], atol=1e-5)


def test_weights_from_a_local_file(tmp_path: Path) -> None:
    import keras

    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    kernel = base.get_layer("Conv1").get_weights()[0]
    base.get_layer("Conv1").set_weights([kernel + 0.5])  # distinguishable from a fresh init
    path = tmp_path / "mnv2.weights.h5"
    base.save_weights(path)
    model = build_model("mobilenet_v2", 32, 4, seed=3, weights=str(path), backbone_size=32)
    inner = model.get_layer(base.name)
    np.testing.assert_allclose(inner.get_layer("Conv1").get_weights()[0], kernel + 0.5)
    with pytest.raises(ModelConfigError, match=r"train.weights: .*missing.h5 is not a file"):
        build_model("mobilenet_v2", 32, 4, seed=3, weights=str(tmp_path / "missing.h5"))


def test_imagenet_weights_offline_fail_clearly_or_fall_back(offline: list[str], caplog) -> None:
    import time

    started = time.monotonic()
    with pytest.raises(
        ModelConfigError, match=r"cannot load imagenet weights for mobilenet_v2.*Offline"
    ):
        build_model("mobilenet_v2", 32, 4, seed=1, weights="imagenet", backbone_size=96)
    assert offline and "mobilenet_v2" in offline[0]
    model = build_model(
        "mobilenet_v2", 32, 4, seed=1, weights="imagenet", weights_fallback=True, backbone_size=96
    )
    assert model.output_shape == (None, 4)
    assert "training from random initialisation" in caplog.text
    assert time.monotonic() - started < 60


def test_imagenet_fetch_from_a_silent_server_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a firewall that drops packets Keras' own fetch would wait forever: a real server
    that accepts the connection and never answers must end in the clear error, not a hang."""
    import socket
    import time

    from keras.src.applications import mobilenet_v2

    from emotionops.training import models

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # the kernel completes the handshake; nothing is ever sent
    try:
        port = silent.getsockname()[1]
        monkeypatch.setattr(mobilenet_v2, "BASE_WEIGHT_PATH", f"http://127.0.0.1:{port}/w/")
        monkeypatch.setattr(models, "WEIGHTS_FETCH_TIMEOUT_S", 1.0)
        started = time.monotonic()
        with pytest.raises(ModelConfigError, match=r"cannot load imagenet weights.*timed out"):
            build_model("mobilenet_v2", 32, 4, seed=1, weights="imagenet", backbone_size=96)
        assert time.monotonic() - started < 30
        assert socket.getdefaulttimeout() is None  # restored for the rest of the process
    finally:
        silent.close()


# A pretrained FER model ------------------------------------------------------------------------
def test_pretrained_model_is_wrapped_for_raw_pixels_and_relabelled(tmp_path: Path) -> None:
    import keras
    import tensorflow as tf

    path = fer_like_model(tmp_path / "emotion_model.h5")
    original = keras.models.load_model(path, compile=False)
    params = TrainParams(model="pretrained", init_from=str(path), image_size=48)
    model = build_from_params(params, LABELS)
    assert model.input_shape == (None, 48, 48, 1) and model.output_shape == (None, 4)

    x = np.random.default_rng(1).uniform(0, 255, (3, 48, 48, 1)).astype(np.float32)
    resized = tf.image.resize(x, (64, 64)).numpy() / 255 * 2 - 1  # what fer's model expects
    probs7 = np.asarray(original(resized))
    keep = [FER7.index(label) for label in LABELS]
    expected = probs7[:, keep] / probs7[:, keep].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-5)
    all7 = build_from_params(params, FER7)
    np.testing.assert_allclose(np.asarray(all7(x)), probs7, atol=1e-5)


def test_pretrained_errors_name_the_file(tmp_path: Path) -> None:
    from emotionops.training.models import wrap_pretrained

    with pytest.raises(ModelConfigError, match=r"missing\.h5: pretrained model file not found"):
        wrap_pretrained(tmp_path / "missing.h5", 48, LABELS, FER7)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelConfigError, match=r"junk.h5: cannot load as a Keras model"):
        wrap_pretrained(junk, 48, LABELS, FER7)
    path = fer_like_model(tmp_path / "m.h5")
    with pytest.raises(ModelConfigError, match=r"7 outputs but train\.init_labels names 4"):
        wrap_pretrained(path, 48, LABELS, LABELS)


def test_params_keep_pretrained_and_init_from_together() -> None:
    with pytest.raises(ValueError, match=r"pretrained and train\.init_from go together"):
        TrainParams(model="pretrained")
    with pytest.raises(ValueError, match=r"pretrained and train\.init_from go together"):
        TrainParams(init_from="x.h5")
    with pytest.raises(ValueError, match=r"train.balance must be one of"):
        TrainParams(balance="oversample")
    with pytest.raises(ValueError, match=r"warmup_epochs must be < train\.epochs"):
        TrainParams(epochs=2, warmup_epochs=2)


# Data: augmentation and balancing --------------------------------------------------------------
def test_augmenter_changes_images_but_keeps_shape_and_range() -> None:
    from emotionops.training.data import augmenter

    assert (
        augmenter(
            AugmentParams(flip=False, rotation=0, shift=0, zoom=0, brightness=0, contrast=0), 1
        )
        is None
    )
    stack = augmenter(AugmentParams(), seed=3)
    x = np.random.default_rng(0).uniform(0, 255, (8, 48, 48, 1)).astype(np.float32)
    y = np.asarray(stack(x, training=True))
    assert y.shape == x.shape
    assert not np.allclose(x, y)
    assert y.min() >= -1e-3 and y.max() <= 255 + 1e-3
    np.testing.assert_array_equal(np.asarray(stack(x, training=False)), x)  # inference: identity


def test_mixup_blends_each_face_and_its_target_with_the_same_partner_and_weight() -> None:
    """Face i of the batch is the constant 10*i with one-hot label i: a mixed face must equal
    the target-weighted sum of its sources, every target stays a distribution over at most two
    faces, weights spread over (0, 1) for alpha 1, and one seed repeats its batches."""
    import tensorflow as tf

    from emotionops.training.data import mixup

    n = 8
    faces = np.arange(n, dtype=np.float32)[:, None, None, None] * 10 * np.ones((n, 4, 4, 1))
    targets = np.eye(n, dtype=np.float32)
    batches = tf.data.Dataset.from_tensors((faces.astype(np.float32), targets)).repeat(6)

    def draw(seed: int, alpha: float = 1.0) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(np.asarray(x), np.asarray(y)) for x, y in mixup(batches, alpha, seed)]

    weights = []
    for x, y in draw(seed=5):
        assert x.shape == faces.shape and y.shape == targets.shape
        np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-6)
        assert ((y > 1e-6).sum(axis=1) <= 2).all()  # itself and one partner at most
        np.testing.assert_allclose(x[:, 0, 0, 0], y @ (10 * np.arange(n)), atol=1e-3)
        assert np.ptp(x, axis=(1, 2, 3)).max() < 1e-3  # a blend of constants stays constant
        weights += np.diag(y).tolist()  # weight of the face itself (1 when paired with itself)
    mixed = [w for w in weights if 1e-3 < w < 1 - 1e-3]
    assert len(mixed) > len(weights) // 2 and 0.25 < float(np.mean(mixed)) < 0.75
    for (xa, ya), (xb, yb) in zip(draw(seed=5), draw(seed=5), strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(draw(seed=5)[0][1], draw(seed=6)[0][1])
    near_ends = [w for _, y in draw(seed=5, alpha=0.1) for w in np.diag(y)]
    assert np.mean([min(w, 1 - w) < 0.1 for w in near_ends]) > 0.6  # small alpha: mild mixing


def test_class_weights_balance_the_total_cost() -> None:
    from emotionops.training.data import class_weights

    weights = class_weights(np.array([0] * 6 + [1] * 2), 3)
    assert weights == {0: pytest.approx(8 / 12), 1: pytest.approx(2.0), 2: 0.0}
    assert 6 * weights[0] == pytest.approx(2 * weights[1])


def test_balanced_sampling_draws_classes_equally_in_even_batches(tmp_path: Path) -> None:
    from emotionops.training.data import make_datasets

    split_csv = write_bar_faces(tmp_path, {"train": 30, "test": 3}, LABELS[:3])
    # Imbalanced: all 10 happy, 3 sad, 2 surprise training images (labels cycle by row).
    lines = split_csv.read_text().splitlines()
    kept, seen_per = [lines[0]], {"happy": 0, "sad": 0, "surprise": 0}
    for line in lines[1:]:
        label, split = line.split(",")[1:3]
        if split == "train":
            seen_per[label] += 1
            if seen_per[label] > {"happy": 10, "sad": 3, "surprise": 2}[label]:
                continue
        kept.append(line)
    split_csv.write_text("\n".join(kept) + "\n")
    data = make_datasets(
        split_csv, tmp_path, LABELS[:3], 48, 6, seed=2, augment=False, balance="sample"
    )
    assert data.steps_per_epoch and data.steps_per_epoch >= 1
    seen = []
    for x, y in data.train.take(40):
        assert int(x.shape[0]) == 6
        seen += np.asarray(y).tolist()
    counts = np.bincount(seen, minlength=3) / len(seen)
    assert np.all(np.abs(counts - 1 / 3) < 0.1), counts
    with pytest.raises(Exception, match="unknown balance"):
        make_datasets(split_csv, tmp_path, LABELS[:3], 48, 6, seed=2, balance="weird")


# Mixed precision and export ---------------------------------------------------------------------
def test_mixed_bfloat16_model_has_a_float32_twin_for_export() -> None:
    import keras

    from emotionops.training.train import _float32_twin, precision_policy

    params = TrainParams(model="small_cnn", precision="mixed_bfloat16", width=0.5)
    with precision_policy("mixed_bfloat16"):
        model = build_from_params(params, LABELS)
    assert keras.config.dtype_policy().name == "float32"  # restored after the block
    assert model.get_layer("stem1_conv").compute_dtype == "bfloat16"
    assert model.get_layer("probs").compute_dtype == "float32"
    twin = _float32_twin(model, params, LABELS)
    assert twin.get_layer("stem1_conv").compute_dtype == "float32"
    x = np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(twin(x)), np.asarray(model(x)), atol=0.05)


def test_dynamic_range_export_is_smaller_and_agrees(tmp_path: Path) -> None:
    import json

    from emotionops.training.export import export_tflite, parity_report, tflite_input_size

    model = build_model("small_cnn", 48, 4, seed=2, width=2.0)
    flat = export_tflite(model, tmp_path / "float", LABELS, 48)
    dyn = export_tflite(model, tmp_path / "dyn", LABELS, 48, quantize="dynamic")
    assert dyn.stat().st_size < 0.6 * flat.stat().st_size
    assert json.loads((tmp_path / "dyn" / "labels.json").read_text())["quantization"] == "dynamic"
    assert tflite_input_size(dyn) == 48
    x = np.random.default_rng(0).uniform(0, 255, (16, 48, 48, 1)).astype(np.float32)
    exact, approx = parity_report(model, flat, x), parity_report(model, dyn, x)
    assert exact["max_abs_diff"] < 1e-4 and exact["top1_agreement"] == 1.0
    assert approx["max_abs_diff"] < 0.2 and approx["n_images"] == 16


def test_same_seed_same_training_with_augmentation(tmp_path: Path) -> None:
    """Seeds make runs repeatable, augmentation included (its stateful seed generator must
    not be raced by parallel tf.data calls)."""
    import keras

    from emotionops.training.data import make_datasets

    split_csv = write_bar_faces(tmp_path, {"train": 24, "test": 2}, LABELS[:3])

    def fit(seed: int) -> list[np.ndarray]:
        keras.utils.set_random_seed(seed)
        data = make_datasets(split_csv, tmp_path, LABELS[:3], 48, 8, seed, augment=AugmentParams())
        model = build_model("small_cnn", 48, 3, seed, width=0.5)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(data.train, epochs=2, steps_per_epoch=data.steps_per_epoch, verbose=0)
        return model.get_weights()

    first, again, other = fit(3), fit(3), fit(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
