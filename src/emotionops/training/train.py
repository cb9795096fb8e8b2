"""One MLflow-tracked training run: data -> model -> fit -> test metrics -> model + TFLite.

Everything the registry gate, the warehouse loaders and the edge service need is logged to
the run, so a model version can always be traced to its data, code and evaluation:
- params (train section + labels), tags dataset_version / git_commit / test_set_fingerprint;
- per-epoch train_/val_ accuracy and loss (step = epoch);
- test_accuracy, test_macro_f1, per-class precision/recall/specificity/f1/support;
- artifacts evaluation/ (confusion matrix PNG + CSV, per-class JSON + CSV), data/split.csv,
  the Keras model (LoggedModel `name="model"`) and tflite/ (model.tflite + labels.json),
  which the edge service downloads as `runs:/<run_id>/tflite`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emotionops.errors import EmotionOpsError
from emotionops.params import TrainParams

if TYPE_CHECKING:
    import keras

    from emotionops.training.data import Datasets

log = logging.getLogger(__name__)

TFLITE_ARTIFACT_PATH = "tflite"  # the edge service pulls runs:/<run_id>/tflite: keep it stable
EVALUATION_ARTIFACT_PATH = "evaluation"
PARITY_SAMPLE = 32  # images compared Keras vs TFLite; one invoke each, ~0.3 ms


class TrainingError(EmotionOpsError):
    """Training cannot start or finish (bad data, no test split, tracking server down...)."""


@dataclass
class TrainResult:
    run_id: str
    model_uri: str
    test_accuracy: float
    val_accuracy: float | None
    n_train: int
    n_val: int
    n_test: int
    epochs_run: int
    per_class: dict[str, dict[str, float]]
    tflite_parity: float
    test_macro_f1: float = 0.0
    dataset_version: str | None = None
    tflite_uri: str = ""
    confusion: list[list[int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Evaluation helpers (pure numpy: easy to test, no sklearn warnings on empty classes) ---------
def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return cm


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def per_class_metrics(cm: np.ndarray, labels: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, specificity, F1 and support per class (0.0 when undefined)."""
    total = cm.sum()
    out: dict[str, dict[str, float]] = {}
    for i, label in enumerate(labels):
        tp = cm[i, i]
        fp = cm[:, i].sum() - tp
        fn = cm[i, :].sum() - tp
        tn = total - tp - fp - fn
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        out[label] = {
            "precision": precision,
            "recall": recall,
            "specificity": _ratio(tn, tn + fp),
            "f1": _ratio(2 * precision * recall, precision + recall),
            "support": float(cm[i, :].sum()),
        }
    return out


def _plot_confusion(cm: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in Airflow workers
    import matplotlib.pyplot as plt

    size = 1.2 + 0.7 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = cm.max() / 2 if cm.size else 0
    for (r, c), v in np.ndenumerate(cm):
        ax.text(c, r, str(v), ha="center", va="center", color="white" if v > threshold else "black")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_evaluation(
    out: Path, cm: np.ndarray, labels: list[str], per_class: dict[str, dict[str, float]]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "confusion_matrix.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["true\\predicted", *labels])
        for label, row in zip(labels, cm.tolist(), strict=True):
            writer.writerow([label, *row])
    (out / "per_class_metrics.json").write_text(json.dumps(per_class, indent=2) + "\n")
    with (out / "per_class_metrics.csv").open("w", newline="", encoding="utf-8") as fh:
        fields = ["label", "precision", "recall", "specificity", "f1", "support"]
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for label, metrics in per_class.items():
            writer.writerow({"label": label, **metrics})
    _plot_confusion(cm, labels, out / "confusion_matrix.png", "test confusion matrix")


# Run context -----------------------------------------------------------------------------
def git_commit(cwd: Path | None = None) -> str | None:
    """HEAD of the repository we run in, if any (DVC/Airflow run from the project root)."""
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path.cwd(),
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def fingerprint_test_set(data: Datasets) -> str:
    """Hash of the test split's (path, label) pairs: lets a gate check two runs saw one test set."""
    test = data.arrays["test"]
    rows = sorted(f"{p}\t{data.labels[y]}" for p, y in zip(test.paths, test.labels, strict=True))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def model_requirements() -> list[str]:
    """Pinned requirements of the Keras flavor, from what is installed.

    Passing them explicitly skips MLflow's requirement inference, which re-imports TensorFlow
    in a subprocess (~20 s on 2 busy cores) and lists both tensorflow-cpu and tensorflow.
    """
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("tensorflow-cpu", "tensorflow", "keras"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return reqs


def _epoch_logger() -> keras.callbacks.Callback:
    import keras
    import mlflow

    class MlflowEpochLogger(keras.callbacks.Callback):
        """Per-epoch metrics with step=epoch (autolog needs tensorboard, which is absent)."""

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            metrics = {}
            for key, value in (logs or {}).items():
                name = key if key.startswith("val_") or key == "learning_rate" else f"train_{key}"
                metrics[name] = float(value)
            if metrics:
                mlflow.log_metrics(metrics, step=epoch)

    return MlflowEpochLogger()


# The stage ------------------------------------------------------------------------------
def train(
    split_csv: Path,
    faces_root: Path,
    labels: list[str],
    params: TrainParams,
    tracking_uri: str,
    experiment: str = "emotionops",
    dataset_version: str | None = None,
    model_name: str | None = None,
    patience: int = 3,
) -> TrainResult:
    """Train `params.model` on the split CSV and log everything to a new MLflow run.

    `model_name` is only recorded as a tag (the registry step registers the result); early
    stopping watches val_loss with `patience` epochs when a val split exists.
    """
    from emotionops.registry import RegistryError, ensure_reachable

    try:
        ensure_reachable(tracking_uri)
    except RegistryError as exc:
        raise TrainingError(str(exc)) from exc

    import keras
    import mlflow
    from mlflow.models import infer_signature

    from emotionops.training.data import make_datasets
    from emotionops.training.export import export_tflite, tflite_parity
    from emotionops.training.models import build_model

    keras.utils.set_random_seed(params.seed)
    data = make_datasets(
        split_csv, faces_root, labels, params.image_size, params.batch_size, params.seed
    )
    n_train, n_val, n_test = data.count("train"), data.count("val"), data.count("test")
    if n_test == 0:
        raise TrainingError(
            f"{split_csv}: the test split is empty; the registry gate needs test metrics"
        )

    model = build_model(params.model, params.image_size, len(labels), params.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=params.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        mlflow.log_params(
            {
                **params.model_dump(),
                "labels": json.dumps(list(labels)),
                "n_classes": len(labels),
                "train_batch_size_effective": data.train_batch_size,
                "early_stopping_patience": patience if n_val else "off",
                "n_train": n_train,
                "n_val": n_val,
                "n_test": n_test,
            }
        )
        tags = {
            "dataset_version": dataset_version or "unversioned",
            "test_set_fingerprint": fingerprint_test_set(data),
            "emotionops.stage": "train",
        }
        if model_name:
            tags["model_name"] = model_name
        if commit := git_commit():
            tags["git_commit"] = commit
        mlflow.set_tags(tags)

        callbacks: list[keras.callbacks.Callback] = [_epoch_logger()]
        if data.val is not None:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=patience, restore_best_weights=True
                )
            )
        history = model.fit(
            data.train,
            validation_data=data.val,
            epochs=params.epochs,
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline shuffles (seeded); Keras would only warn
            verbose=2,
        )
        epochs_run = len(history.history["loss"])

        val_accuracy: float | None = None
        if data.val is not None:
            val_loss, val_accuracy = (
                float(v) for v in model.evaluate(data.val, verbose=0, return_dict=False)
            )
            mlflow.log_metrics({"final_val_loss": val_loss, "final_val_accuracy": val_accuracy})

        test = data.arrays["test"]
        probs = model.predict(data.test, verbose=0)
        y_pred = probs.argmax(axis=1)
        cm = confusion_matrix(test.labels, y_pred, len(labels))
        per_class = per_class_metrics(cm, list(labels))
        test_accuracy = float(np.trace(cm) / cm.sum())
        macro_f1 = float(np.mean([m["f1"] for m in per_class.values()]))
        metrics = {
            "test_accuracy": test_accuracy,
            "test_macro_f1": macro_f1,
            "epochs_run": float(epochs_run),
        }
        for label, values in per_class.items():
            for key, value in values.items():
                metrics[f"test_{label}_{key}"] = value
        mlflow.log_metrics(metrics)

        with tempfile.TemporaryDirectory(prefix="emotionops-train-") as tmp:
            tmp_path = Path(tmp)
            _write_evaluation(tmp_path / "evaluation", cm, list(labels), per_class)
            mlflow.log_artifacts(str(tmp_path / "evaluation"), EVALUATION_ARTIFACT_PATH)
            split_copy = tmp_path / "data" / "split.csv"
            split_copy.parent.mkdir()
            shutil.copyfile(split_csv, split_copy)
            mlflow.log_artifact(str(split_copy), "data")

            x_example = test.images[:2].astype(np.float32)
            signature = infer_signature(x_example, model.predict(x_example, verbose=0))
            info = mlflow.tensorflow.log_model(
                model,
                name="model",
                signature=signature,
                input_example=x_example,
                pip_requirements=model_requirements(),
            )

            tflite_dir = tmp_path / "tflite"
            tflite_path = export_tflite(model, tflite_dir, list(labels), params.image_size)
            parity = tflite_parity(model, tflite_path, test.images[:PARITY_SAMPLE])
            mlflow.log_artifacts(str(tflite_dir), TFLITE_ARTIFACT_PATH)
        mlflow.set_tag("tflite_parity", f"{parity:.3g}")
        mlflow.log_metric("tflite_parity_max_abs_diff", parity)
        log.info(
            "run %s: test_accuracy=%.3f macro_f1=%.3f epochs=%d tflite_parity=%.2g",
            run_id,
            test_accuracy,
            macro_f1,
            epochs_run,
            parity,
        )

    return TrainResult(
        run_id=run_id,
        model_uri=info.model_uri,
        test_accuracy=test_accuracy,
        val_accuracy=val_accuracy,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        epochs_run=epochs_run,
        per_class=per_class,
        tflite_parity=parity,
        test_macro_f1=macro_f1,
        dataset_version=dataset_version,
        tflite_uri=f"runs:/{run_id}/{TFLITE_ARTIFACT_PATH}",
        confusion=cm.tolist(),
    )
