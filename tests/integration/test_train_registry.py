"""Train -> MLflow run -> registry, against a real MLflow server (session fixture).

One tiny training run (four epochs on generated bar images) is shared by the tests in this
module: TensorFlow import, log_model (~6 s) and the TFLite export dominate the time.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from _factories import TINY_TRAIN, tiny_train_params, write_bar_faces
from emotionops.params import RegistryParams

pytestmark = pytest.mark.integration

LABELS = ["happy", "sad", "surprise"]
EPOCHS = 4  # the bar classes are learnt by epoch 3; still a few seconds of fitting


def make_faces(root: Path, counts: dict[str, int], size: int = 48, seed: int = 0) -> Path:
    return write_bar_faces(root, counts, LABELS, size, seed)


def dead_url() -> str:
    from emotionops.tracking import free_port

    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def warehouse(tmp_path: Path):
    """A fresh SQLite warehouse (the gate's promotion lease lives there)."""
    from emotionops.warehouse import connect, init_schema

    engine = connect(f"sqlite:///{tmp_path / 'warehouse.db'}")
    init_schema(engine)
    return engine


@pytest.fixture(scope="module")
def faces_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    make_faces(root, {"train": 45, "val": 9, "test": 12})
    return root


@pytest.fixture(scope="module")
def trained(mlflow_server: str, faces_root: Path):
    from emotionops.training.train import train

    root = faces_root
    split_csv = root / "split.csv"
    params = tiny_train_params(epochs=EPOCHS, batch_size=16, learning_rate=0.003, seed=11)
    return train(
        split_csv,
        root,
        LABELS,
        params,
        tracking_uri=mlflow_server,
        experiment="it-train",
        dataset_version="dv-test-1",
        model_name="it-model",
        patience=5,
        dvc_hashes={"data/split.csv": "0123abcd"},
        export_dir=root / "export",
    )


def test_run_logs_params_epoch_metrics_and_artifacts(
    trained, mlflow_server: str, tmp_path: Path
) -> None:
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(trained.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model"] == "small_cnn"
    assert json.loads(run.data.params["labels"]) == LABELS
    assert run.data.params["train_batch_size_effective"] == "16"
    assert run.data.tags["dataset_version"] == "dv-test-1"
    assert float(run.data.tags["tflite_parity"]) < 1e-3
    assert run.data.params["augment.rotation"] == "0.04"  # nested params flattened
    assert run.data.tags["dvc.data/split.csv"] == "0123abcd"
    from emotionops.training.train import git_commit

    assert run.data.tags.get("git_commit") == git_commit()  # the checkout's HEAD (None: no git)
    info = mlflow.models.get_model_info(trained.model_uri)
    (spec,) = info.signature.inputs.to_dict()
    assert list(spec["tensor-spec"]["shape"]) == [-1, 48, 48, 1]  # raw pixels, any batch
    assert list(info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 3]
    assert info.saved_input_example_info is not None
    assert (trained.n_train, trained.n_val, trained.n_test) == (45, 9, 12)
    assert trained.epochs_run == EPOCHS

    for name in ("train_accuracy", "train_loss", "val_accuracy", "val_loss", "learning_rate"):
        history = client.get_metric_history(trained.run_id, name)
        assert sorted(m.step for m in history) == list(range(EPOCHS)), name
    lrs = [
        m.value
        for m in sorted(
            client.get_metric_history(trained.run_id, "learning_rate"), key=lambda m: m.step
        )
    ]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] > lrs[-1]  # the cosine schedule decays
    assert 0 <= run.data.metrics["test_flip_consistency"] <= 1
    assert run.data.metrics["train_images_per_s"] > 0
    assert run.data.metrics["test_accuracy"] == pytest.approx(trained.test_accuracy)
    assert trained.test_accuracy > 0.5  # chance is 1/3: labels and images stayed aligned
    for label in LABELS:
        for key in ("precision", "recall", "specificity", "f1", "support"):
            assert f"test_{label}_{key}" in run.data.metrics
    assert sum(m["support"] for m in trained.per_class.values()) == 12
    assert np.trace(np.array(trained.confusion)) / 12 == pytest.approx(trained.test_accuracy)

    names = {a.path for a in client.list_artifacts(trained.run_id, "evaluation")}
    assert {
        "evaluation/confusion_matrix.png",
        "evaluation/confusion_matrix.csv",
        "evaluation/confusion_matrix_normalized.png",
        "evaluation/confusion_matrix_normalized.csv",
        "evaluation/per_class_metrics.json",
        "evaluation/per_class_metrics.csv",
    } <= names
    top = {a.path for a in client.list_artifacts(trained.run_id)}
    assert {"curves", "tflite", "tflite_dynamic", "parity.json", "model_card.md", "data"} <= top
    assert {a.path for a in client.list_artifacts(trained.run_id, "curves")} == {
        "curves/history.csv",
        "curves/training_curves.png",
    }
    parity = mlflow.artifacts.load_dict(f"runs:/{trained.run_id}/parity.json")
    assert parity["float"]["max_abs_diff"] < 1e-3 and parity["float"]["top1_agreement"] == 1.0
    assert parity["dynamic"]["bytes"] < parity["float"]["bytes"]
    assert parity["dynamic"]["n_images"] == 12  # measured on the test images
    card = mlflow.artifacts.load_text(f"runs:/{trained.run_id}/model_card.md")
    assert "dv-test-1" in card and "AI Act" in card and "| happy |" in card

    # What the edge service does: pull runs:/<id>/tflite and run it.
    from emotionops.training.export import tflite_predict

    local = Path(
        mlflow.artifacts.download_artifacts(
            trained.tflite_uri, dst_path=str(tmp_path), tracking_uri=mlflow_server
        )
    )
    assert trained.tflite_uri == f"runs:/{trained.run_id}/tflite"
    meta = json.loads((local / "labels.json").read_text())
    assert meta["labels"] == LABELS and meta["image_size"] == 48
    probs = tflite_predict(local / "model.tflite", np.full((1, 48, 48, 1), 100.0, np.float32))
    assert probs.shape == (1, 3) and probs.sum() == pytest.approx(1.0, abs=1e-4)


def test_export_dir_holds_the_model_for_dvc(trained, faces_root: Path) -> None:
    export = faces_root / "export"
    assert {p.name for p in export.iterdir()} == {
        "model.keras",
        "model.tflite",
        "labels.json",
        "model_card.md",
    }
    assert json.loads((export / "labels.json").read_text())["labels"] == LABELS
    assert f"`{trained.run_id}`" in (export / "model_card.md").read_text()
    assert trained.metrics()["test_accuracy"] == trained.test_accuracy
    assert len(trained.history["loss"]) == EPOCHS


def test_evaluate_any_model_reference(
    trained, mlflow_server: str, faces_root: Path, tmp_path: Path
) -> None:
    """The same test metrics from the run, the registry and the file: one evaluation code path."""
    from emotionops.registry import register_and_promote
    from emotionops.training.evaluate import evaluate_probs, load_model

    name = f"eval-{uuid.uuid4().hex[:8]}"
    assert register_and_promote(
        mlflow_server, name, trained.run_id, faces_root, RegistryParams(), warehouse(tmp_path)
    ).promoted
    from emotionops.training.data import load_arrays

    root = faces_root

    test = load_arrays(root / "split.csv", root, LABELS, 48)["test"]
    accuracies = []
    for ref in (f"runs:/{trained.run_id}", f"models:/{name}@champion", f"models:/{name}/1",
                str(root / "export"), str(root / "export" / "model.tflite"),
                f"runs:/{trained.run_id}/tflite"):  # fmt: skip
        model = load_model(ref, mlflow_server)
        assert model.labels == LABELS, ref
        ev = evaluate_probs(model.predict, test.images, test.labels, LABELS)
        accuracies.append(ev.accuracy)
        assert ev.confusion == trained.confusion, ref
    assert accuracies == [pytest.approx(trained.test_accuracy)] * 6
    from emotionops.training.evaluate import EvaluationError

    with pytest.raises(EvaluationError, match="cannot load models:/no-such-model@champion"):
        load_model("models:/no-such-model@champion", mlflow_server)


def test_register_twice_and_champion_moves_per_the_gate(
    trained, mlflow_server: str, faces_root: Path, tmp_path: Path
) -> None:
    """The trained model: champion over the floor; the same model again has no improvement
    to show and stays challenger; with no improvement asked, it replaces the champion."""
    from emotionops.registry import get_alias_version, register_and_promote

    name = f"emotion-{uuid.uuid4().hex[:8]}"
    engine = warehouse(tmp_path)
    assert get_alias_version(mlflow_server, name, "champion") is None  # no such model yet

    first = register_and_promote(mlflow_server, name, trained.run_id, faces_root,
                                 RegistryParams(), engine)  # fmt: skip
    assert (first.version, first.promoted, first.previous_version) == (1, True, None)
    assert first.reason.startswith("all checks passed") and "vs floor 0.3" in first.reason
    assert first.decision.challenger.macro_f1 == pytest.approx(trained.test_macro_f1)

    second = register_and_promote(mlflow_server, name, trained.run_id, faces_root,
                                  RegistryParams(), engine)  # fmt: skip
    assert (second.version, second.promoted, second.previous_version) == (2, False, 1)
    assert "macro-F1: " in second.reason and "(+0.0000, needs +0.005)" in second.reason
    assert get_alias_version(mlflow_server, name, "champion").version == "1"
    assert get_alias_version(mlflow_server, name, "challenger").version == "2"

    third = register_and_promote(mlflow_server, name, trained.run_id, faces_root,
                                 RegistryParams(min_improvement=0), engine)  # fmt: skip
    assert (third.version, third.promoted, third.previous_version) == (3, True, 1)
    assert get_alias_version(mlflow_server, name, "champion").version == "3"


def test_registry_down_fails_fast(trained) -> None:
    from emotionops.registry import RegistryError, get_alias_version, register_and_promote

    url = dead_url()
    start = time.monotonic()
    with pytest.raises(RegistryError, match="not reachable"):
        register_and_promote(url, "m", trained.run_id, Path("."), RegistryParams(), None)
    with pytest.raises(RegistryError, match="not reachable"):
        get_alias_version(url, "m", "champion")
    assert time.monotonic() - start < 20  # MLflow's own retries would take minutes


def test_training_with_tracking_server_down_fails_fast(tmp_path: Path) -> None:
    from emotionops.training.train import TrainingError, train

    split_csv = make_faces(tmp_path, {"train": 4, "test": 2})
    start = time.monotonic()
    with pytest.raises(TrainingError, match="not reachable"):
        train(split_csv, tmp_path, LABELS, tiny_train_params(epochs=1), tracking_uri=dead_url())
    assert time.monotonic() - start < 20  # MLflow's own retries would take minutes


def test_a_spent_time_budget_ends_the_run_with_the_learning_rate_at_its_floor(
    mlflow_server: str, faces_root: Path
) -> None:
    """A budget shorter than the first epoch: the run stops after it although the cap allows
    50, and the cosine, which follows the clock, has reached its 1% floor by its last steps."""
    from mlflow import MlflowClient

    from emotionops.training.train import train

    params = tiny_train_params(
        epochs=50, batch_size=16, optimizer="sgd", learning_rate=0.05, warmup_epochs=0,
        lr_schedule="cosine", max_minutes=0.005, partners=[], flip_average=False,
    )  # fmt: skip
    result = train(
        faces_root / "split.csv", faces_root, LABELS, params, tracking_uri=mlflow_server,
        experiment="it-budget", progress=False,
    )  # fmt: skip
    run = MlflowClient(tracking_uri=mlflow_server).get_run(result.run_id)
    assert result.epochs_run == 1
    assert run.data.metrics["learning_rate"] == pytest.approx(0.0005)


def test_a_distilled_run_trains_on_the_teachers_soft_labels(
    trained, mlflow_server: str, faces_root: Path, tmp_path: Path
) -> None:
    """Cross-entropy never falls below the entropy of its targets: the hard-label run of this
    module ends under the soft targets' mean entropy, the distilled run (same data, epochs and
    optimizer) cannot; the run records its teachers and what they cost."""
    from mlflow import MlflowClient

    from emotionops.training.data import load_arrays
    from emotionops.training.distill import soft_targets, teacher_probs
    from emotionops.training.models import build_partners
    from emotionops.training.train import train

    params = tiny_train_params(
        epochs=EPOCHS, batch_size=16, learning_rate=0.003, seed=11, distill_from=["fer"],
        distill_weight=0.5, distill_temperature=2.0,
    )  # fmt: skip
    result = train(
        faces_root / "split.csv", faces_root, LABELS, params, tracking_uri=mlflow_server,
        experiment="it-distill", export_dir=tmp_path / "export", progress=False,
    )  # fmt: skip
    x = load_arrays(faces_root / "split.csv", faces_root, LABELS, 48)["train"]
    teachers = build_partners(params, LABELS, ["fer"], role="teacher")
    targets = soft_targets(x.labels, teacher_probs(teachers, x.images), 0.5, 2.0)
    entropy = float(-(targets * np.log(targets)).sum(axis=1).mean())
    assert entropy > 0.3
    assert trained.history["loss"][-1] < 0.9 * entropy <= result.history["loss"][-1]

    run = MlflowClient(tracking_uri=mlflow_server).get_run(result.run_id)
    assert run.data.params["distill_from"] == '["fer"]'
    assert result.distill_seconds is not None and result.distill_seconds > 0
    assert run.data.metrics["distill_seconds"] == pytest.approx(result.distill_seconds)
    assert result.metrics()["distill_seconds"] > 0  # data/metrics/train.json (dvc metrics)
    card = (tmp_path / "export" / "model_card.md").read_text()
    assert "0.5 of the soft labels of `fer` (temperature 2)" in card


def test_a_mixup_run_trains_on_blended_targets(
    trained, mlflow_server: str, faces_root: Path, tmp_path: Path
) -> None:
    """Same data, seed, epochs and optimizer as the module's hard-label run, which the seed
    repeats exactly without mixup: blended faces and targets (0.5 nats of target entropy on
    average for two labels at alpha 1) keep the train loss well above that run's."""
    from mlflow import MlflowClient

    from emotionops.training.train import train

    params = tiny_train_params(
        epochs=EPOCHS, batch_size=16, learning_rate=0.003, seed=11,
        augment={**TINY_TRAIN["augment"], "mixup": 1.0},
    )  # fmt: skip
    result = train(
        faces_root / "split.csv", faces_root, LABELS, params, tracking_uri=mlflow_server,
        experiment="it-mixup", export_dir=tmp_path / "export", progress=False,
    )  # fmt: skip
    assert result.history["loss"][-1] > 1.3 * trained.history["loss"][-1]  # measured: 0.65, 0.38
    run = MlflowClient(tracking_uri=mlflow_server).get_run(result.run_id)
    assert run.data.params["augment.mixup"] == "1.0"


def test_default_recipe_runs_end_to_end_and_deploys_what_it_evaluated(
    mlflow_server: str, faces_root: Path, tmp_path: Path
) -> None:
    """params.yaml's recipe on the bar faces: vgg in the CPU's precision, SGD + warm-up + cosine, a time
    budget with an epoch cap, the deployed model = flip-averaged network + both installed
    partners; what is evaluated is what is exported (Keras, TFLite) and it ignores mirroring."""
    import keras
    from mlflow import MlflowClient

    from emotionops.params import load_params
    from emotionops.training.train import train

    recipe = load_params(Path(__file__).parents[2] / "params.yaml").train
    params = recipe.model_copy(update={"epochs": 3, "batch_size": 16, "width": 0.25})
    result = train(
        faces_root / "split.csv", faces_root, LABELS, params, tracking_uri=mlflow_server,
        experiment="it-recipe", export_dir=tmp_path / "export", progress=False,
    )  # fmt: skip
    run = MlflowClient(tracking_uri=mlflow_server).get_run(result.run_id)
    from emotionops.training.hardware import cpu_model, resolve_precision

    assert (
        run.data.params["optimizer"] == "sgd" and run.data.params["precision_requested"] == "auto"
    )
    # auto resolves from this CPU's flags; the run says what it chose and on which CPU
    assert run.data.params["precision"] == resolve_precision("auto") != "auto"
    assert run.data.tags["cpu_model"] == cpu_model()
    assert run.data.params["partners"] == '["fer", "human"]'
    assert result.epochs_run == 3  # the 60-minute budget fits the 3-epoch cap
    assert run.data.metrics["learning_rate"] < recipe.learning_rate  # the cosine ran to the cap
    assert result.network_test_accuracy is not None
    assert run.data.metrics["test_accuracy_network_alone"] == result.network_test_accuracy
    flip = result.network_flip_consistency  # the deployed model's is 1.0 by construction
    assert flip is not None and run.data.metrics["test_flip_consistency_network_alone"] == flip
    assert result.tflite_parity < 1e-4

    deployed = keras.models.load_model(tmp_path / "export" / "model.keras")
    assert {layer.name for layer in deployed.layers} >= {"vgg", "partner0", "partner1"}
    x = np.random.default_rng(3).uniform(0, 255, (4, 48, 48, 1)).astype(np.float32)
    np.testing.assert_allclose(deployed(x), deployed(x[:, :, ::-1]), atol=1e-5)
    card = (tmp_path / "export" / "model_card.md").read_text()
    assert "frozen partner networks `fer`, `human`" in card and "flip averaging" in card


def test_a_split_with_votes_is_scored_on_both_rulers(
    mlflow_server: str, faces_root: Path, tmp_path: Path
) -> None:
    """The test rows carry FER+-style votes (happy and sad swapped by the crowd, no majority
    on three faces): the run logs the original ruler under today's names and the ferplus
    ruler beside it (MLflow metrics, evaluation/ferplus_* artifacts, DVC metrics, model
    card), equal to scoring the exported model on the split's FER+ majority labels."""
    import csv

    from mlflow import MlflowClient

    from emotionops.dataset.votes import encode_votes
    from emotionops.training.evaluate import evaluate_probs, load_model, split_eval_set
    from emotionops.training.train import train

    crowd = {"happy": {"sad": 8, "happy": 2}, "sad": {"happy": 8, "sad": 2},
             "surprise": {"surprise": 9, "-": 1}}  # fmt: skip
    split = tmp_path / "split.csv"
    with (faces_root / "split.csv").open(newline="") as src, split.open("w", newline="") as dst:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=[*(reader.fieldnames or []), "votes"])
        writer.writeheader()
        n_test = 0
        for row in reader:
            votes = None
            if row["split"] == "test":
                votes = {"happy": 4, "sad": 4, "-": 2} if n_test < 3 else crowd[row["label"]]
                n_test += 1
            writer.writerow({**row, "votes": encode_votes(votes)})
    params = tiny_train_params(epochs=2, batch_size=16, learning_rate=0.003, seed=11,
                               flip_average=True)  # fmt: skip
    result = train(split, faces_root, LABELS, params, tracking_uri=mlflow_server,
                   experiment="it-rulers", progress=False, export_dir=tmp_path / "export")  # fmt: skip
    client = MlflowClient(tracking_uri=mlflow_server)
    metrics = client.get_run(result.run_id).data.metrics
    assert result.ferplus is not None and result.ferplus_left_out == 3
    assert metrics["test_ferplus_n"] == 9 and metrics["test_ferplus_left_out"] == 3
    assert metrics["test_accuracy"] == pytest.approx(result.test_accuracy)
    for label in LABELS:
        assert f"test_ferplus_{label}_recall" in metrics
    assert "test_ferplus_accuracy_network_alone" in metrics  # flip averaging: not the same model

    test = split_eval_set(split, faces_root, LABELS, 48)
    model = load_model(str(tmp_path / "export"))
    again = evaluate_probs(model.predict, test.images, test.labels, LABELS, votes=test.votes)
    assert again.ferplus is not None
    assert metrics["test_ferplus_accuracy"] == pytest.approx(again.ferplus.accuracy)
    assert metrics["test_ferplus_macro_f1"] == pytest.approx(again.ferplus.macro_f1)
    assert result.ferplus.confusion == again.ferplus.confusion
    assert sum(map(sum, result.ferplus.confusion)) == 9

    artifacts = {a.path for a in client.list_artifacts(result.run_id, "evaluation")}
    assert {"evaluation/per_class_metrics.json", "evaluation/confusion_matrix.csv",
            "evaluation/ferplus_per_class_metrics.json",
            "evaluation/ferplus_confusion_matrix.csv"} <= artifacts  # fmt: skip
    dvc = result.metrics()
    assert dvc["test_ferplus_accuracy"] == pytest.approx(again.ferplus.accuracy)
    assert set(dvc["test_ferplus_recall"]) == set(LABELS)
    card = (tmp_path / "export" / "model_card.md").read_text()
    assert "On the FER+ majority labels of the same faces" in card
    assert "9 faces,\n3 without a majority" in card


def test_a_split_without_votes_has_no_ferplus_ruler(trained) -> None:
    assert trained.ferplus is None
    assert not any("ferplus" in key for key in trained.metrics())
