"""Evaluation: the same metrics for any model on any labelled face set.

A model is a training run (`runs:/<id>`, or `runs:/<id>/tflite` for its TFLite export), a
registry URI (`models:/<name>@champion`, `models:/<name>/3`), or a file: a Keras model
(.keras/.h5, or a folder holding model.keras), a TFLite model (.tflite, labels.json beside
it) or a foreign FER model (wrapped with `--input-scale` and `--model-labels`). The data is
the project's frozen test split (or another split) or any external folder of class folders
(one split of a split layout), mapped onto the labels like an import. Metrics: accuracy, macro-F1, per-class precision/recall/specificity/F1/support, the
confusion matrix (counts and row-normalised, CSV + PNG) and a behavioural check: the share
of faces whose predicted label survives a horizontal flip (a mirrored face keeps its
emotion), plus prediction throughput.

Two rulers: the `original` labels (the folder a face was imported from, FER2013's noisy
labels) and, when the data carries annotator votes (split.csv's `votes` column, FER+), the
`ferplus` ruler: the same predictions scored against each face's FER+ majority label
(dataset.votes.majority over the evaluated labels). Faces without such a majority are left
out of that ruler and counted; without votes the ferplus ruler is absent, not zero.

The artifact names written here (evaluation/per_class_metrics.json, confusion_matrix.csv)
are read by `emotionops warehouse load-run`: keep them stable.
"""

from __future__ import annotations

import atexit
import csv
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emotionops.dataset.votes import majority_indices, split_votes
from emotionops.errors import EmotionOpsError
from emotionops.params import DatasetParams

#: The rulers: the imported (folder) labels, and the FER+ majority labels of the same faces.
ORIGINAL, FERPLUS = "original", "ferplus"
RULERS = ("auto", ORIGINAL, FERPLUS)  # registry.ruler; auto: ferplus when the data has votes


class EvaluationError(EmotionOpsError):
    """The model or the evaluation data cannot be used."""


# Metrics (pure numpy: easy to test, no sklearn warnings on empty classes) --------------------
def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return cm


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def per_class_metrics(cm: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, float]]:
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


def normalise_rows(cm: np.ndarray) -> np.ndarray:
    """Each true class's row as fractions (recall on the diagonal); empty rows stay 0."""
    sums = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, sums, out=np.zeros(cm.shape, dtype=float), where=sums > 0)


@dataclass
class Evaluation:
    labels: list[str]
    n_images: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    loss: float | None = None  # mean cross-entropy (see cross_entropy)
    flip_consistency: float | None = None  # share of faces whose label survives a mirror
    flip_accuracy: float | None = None
    predict_images_per_s: float | None = None
    source: dict[str, str] = field(default_factory=dict)  # model and data descriptions
    y_pred: np.ndarray | None = field(default=None, repr=False)  # predicted label indices
    #: the same predictions on the FER+ majority labels (None: the data has no votes)
    ferplus: Evaluation | None = None
    ferplus_left_out: int = 0  # faces without a FER+ majority in the label set

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """Flat metrics (for MLflow and DVC): accuracy, macro_f1, loss, flip,
        <label>_<metric>; with votes also ferplus_{accuracy,macro_f1,n,left_out} and
        ferplus_<label>_recall (the original-label names stay as they were)."""
        out = {f"{prefix}accuracy": self.accuracy, f"{prefix}macro_f1": self.macro_f1}
        out.update(self.ferplus_metrics(prefix))
        if self.loss is not None:
            out[f"{prefix}loss"] = self.loss
        if self.flip_consistency is not None:
            out[f"{prefix}flip_consistency"] = self.flip_consistency
        for label, values in self.per_class.items():
            for key, value in values.items():
                out[f"{prefix}{label}_{key}"] = value
        return out

    def ferplus_metrics(self, prefix: str = "", suffix: str = "") -> dict[str, float]:
        """The ferplus ruler's flat metrics ({} when absent); `suffix` e.g. _network_alone."""
        fp = self.ferplus
        if fp is None:
            return {}
        out = {
            f"{prefix}ferplus_accuracy{suffix}": fp.accuracy,
            f"{prefix}ferplus_macro_f1{suffix}": fp.macro_f1,
            f"{prefix}ferplus_n{suffix}": float(fp.n_images),
            f"{prefix}ferplus_left_out{suffix}": float(self.ferplus_left_out),
        }
        for label, values in fp.per_class.items():
            out[f"{prefix}ferplus_{label}_recall{suffix}"] = values["recall"]
        return out

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("y_pred")
        if out["ferplus"] is not None:
            out["ferplus"].pop("y_pred")
        return out


#: Probabilities are clipped to [EPSILON, 1] before the log (Keras' backend epsilon): one
#: confidently wrong face costs -log(1e-7) = 16.1 instead of an infinite mean.
EPSILON = 1e-7


def cross_entropy(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Mean categorical cross-entropy of probabilities [N, K] against label indices.

    Each row is renormalised over its K columns first: a 7-class model scored on 4 labels
    then gets the loss of its distribution over those 4 (the same outputs its argmax uses),
    and a softmax row is unchanged. No label smoothing: this is the model's loss on the
    data, comparable between runs whatever their training recipe (the training curves'
    val_loss includes train.label_smoothing, so it reads higher)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
    sums = p.sum(axis=1, keepdims=True)
    p = np.divide(p, sums, out=np.full(p.shape, 1.0 / p.shape[1]), where=sums > 0)
    picked = p[np.arange(len(p)), np.asarray(y_true, dtype=int)]
    return float(np.mean(-np.log(np.clip(picked, EPSILON, 1.0))))


def score(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> Evaluation:
    cm = confusion_matrix(y_true, y_pred, len(labels))
    per_class = per_class_metrics(cm, labels)
    return Evaluation(
        labels=list(labels),
        n_images=int(cm.sum()),
        accuracy=_ratio(np.trace(cm), cm.sum()),
        macro_f1=float(np.mean([m["f1"] for m in per_class.values()])),
        per_class=per_class,
        confusion=cm.tolist(),
    )


def ferplus_score(
    y_pred: np.ndarray, votes: Sequence[Mapping[str, int] | None] | None, labels: Sequence[str]
) -> tuple[Evaluation | None, int]:
    """Predictions scored on the faces' FER+ majority labels, and how many faces were left
    out (no majority in `labels`). (None, 0) when no face has votes: the ruler is absent."""
    if votes is None or not any(votes):
        return None, 0
    if len(votes) != len(y_pred):
        raise EvaluationError(f"{len(votes)} vote entries for {len(y_pred)} predictions")
    truth = majority_indices(votes, labels)
    kept = truth >= 0
    left_out = int((~kept).sum())
    if not kept.any():
        return None, left_out
    result = score(truth[kept], np.asarray(y_pred)[kept], labels)
    result.y_pred = np.asarray(y_pred)[kept]
    return result, left_out


def evaluate_probs(
    predict: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    y_true: np.ndarray,
    labels: Sequence[str],
    columns: Sequence[int] | None = None,
    flip_check: bool = True,
    votes: Sequence[Mapping[str, int] | None] | None = None,
) -> Evaluation:
    """Score `predict` (images float32 [N,S,S,1] -> probabilities) on labelled images.

    `columns`: which model outputs are `labels` (a 7-class model scored on 4 labels: the
    argmax is taken over those outputs only). `votes`: each image's annotator votes (or
    None), for the ferplus ruler beside the original labels."""
    if len(images) == 0:
        raise EvaluationError("nothing to evaluate: the evaluation set is empty")
    x = np.asarray(images, dtype=np.float32)
    started = time.perf_counter()
    probs = np.asarray(predict(x))
    elapsed = time.perf_counter() - started
    cols = list(columns) if columns is not None else list(range(len(labels)))
    y_pred = probs[:, cols].argmax(axis=1)
    result = score(y_true, y_pred, labels)
    result.loss = cross_entropy(probs[:, cols], y_true)
    result.y_pred = y_pred
    result.predict_images_per_s = len(x) / elapsed if elapsed > 0 else None
    result.ferplus, result.ferplus_left_out = ferplus_score(y_pred, votes, labels)
    if flip_check:
        flipped = np.asarray(predict(x[:, :, ::-1, :].copy()))[:, cols].argmax(axis=1)
        result.flip_consistency = float(np.mean(flipped == y_pred))
        result.flip_accuracy = float(np.mean(flipped == np.asarray(y_true)))
    return result


# Artifacts ---------------------------------------------------------------------------------
def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in Airflow workers
    import matplotlib.pyplot as plt

    normalised = cm.dtype.kind == "f"
    size = 1.2 + 0.7 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalised else None)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = (cm.max() / 2) if cm.size else 0
    for (r, c), v in np.ndenumerate(cm):
        text = f"{v:.2f}" if normalised else str(v)
        ax.text(c, r, text, ha="center", va="center", color="white" if v > threshold else "black")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_matrix(path: Path, cm: np.ndarray, labels: Sequence[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["true\\predicted", *labels])
        for label, row in zip(labels, cm.tolist(), strict=True):
            writer.writerow([label, *(round(v, 6) if isinstance(v, float) else v for v in row)])


def _write_ruler(out: Path, result: Evaluation, prefix: str, title: str) -> None:
    """One ruler's confusion matrices (counts, row-normalised; CSV + PNG) and per-class
    metrics (JSON + CSV), file names prefixed (`` for the original labels: the names the
    warehouse loader reads; `ferplus_` for the FER+ ruler)."""
    cm = np.asarray(result.confusion, dtype=np.int64)
    labels = result.labels
    _write_matrix(out / f"{prefix}confusion_matrix.csv", cm, labels)
    _write_matrix(out / f"{prefix}confusion_matrix_normalized.csv", normalise_rows(cm), labels)
    (out / f"{prefix}per_class_metrics.json").write_text(
        json.dumps(result.per_class, indent=2) + "\n"
    )
    with (out / f"{prefix}per_class_metrics.csv").open("w", newline="", encoding="utf-8") as fh:
        fields = ["label", "precision", "recall", "specificity", "f1", "support"]
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for label, metrics in result.per_class.items():
            writer.writerow({"label": label, **metrics})
    plot_confusion(
        cm, labels, out / f"{prefix}confusion_matrix.png", f"{title} confusion matrix (counts)"
    )
    plot_confusion(
        normalise_rows(cm),
        labels,
        out / f"{prefix}confusion_matrix_normalized.png",
        f"{title} (recall)",
    )


def write_evaluation(out: Path, result: Evaluation, title: str = "test") -> Path:
    """confusion_matrix{,_normalized}.{csv,png}, per_class_metrics.{json,csv}, metrics.json;
    with votes the same files prefixed `ferplus_` (the FER+ majority ruler), and metrics.json
    gains a `ferplus` entry."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_ruler(out, result, "", f"{title} ({ORIGINAL} labels)" if result.ferplus else title)
    summary = {
        "n_images": result.n_images,
        "accuracy": result.accuracy,
        "macro_f1": result.macro_f1,
        "loss": result.loss,
        "flip_consistency": result.flip_consistency,
        "flip_accuracy": result.flip_accuracy,
        "predict_images_per_s": result.predict_images_per_s,
        "recall": {label: m["recall"] for label, m in result.per_class.items()},
        **({"source": result.source} if result.source else {}),
    }
    if result.ferplus is not None:
        fp = result.ferplus
        summary[FERPLUS] = {
            "n_images": fp.n_images,
            "left_out": result.ferplus_left_out,
            "accuracy": fp.accuracy,
            "macro_f1": fp.macro_f1,
            "recall": {label: m["recall"] for label, m in fp.per_class.items()},
        }
        _write_ruler(out, fp, f"{FERPLUS}_", f"{title} (FER+ majority labels)")
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return out


def write_predictions(
    path: Path, y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]
) -> None:
    """One row per image (actual, predicted): DVC's `confusion` plot template reads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["actual", "predicted"])
        for t, p in zip(np.asarray(y_true).tolist(), np.asarray(y_pred).tolist(), strict=True):
            writer.writerow([labels[t], labels[p]])


# Models ------------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A model behind one predict function, with the labels of its outputs."""

    predict: Callable[[np.ndarray], np.ndarray]
    labels: list[str]
    image_size: int
    description: str

    def columns_for(self, labels: Sequence[str]) -> list[int]:
        missing = [lab for lab in labels if lab not in self.labels]
        if missing:
            raise EvaluationError(
                f"the model ({self.description}) has no output for {missing}; its labels are "
                f"{self.labels} (evaluate on those, e.g. --labels {','.join(self.labels)})"
            )
        return [self.labels.index(lab) for lab in labels]


def keras_predictor(model: Any, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """A Keras model as `evaluate_probs` takes it: images -> probabilities (numpy)."""

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))

    return predict


def _labels_json(folder: Path) -> list[str] | None:
    meta = folder / "labels.json"
    if not meta.is_file():
        return None
    try:
        return [str(x) for x in json.loads(meta.read_text())["labels"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise EvaluationError(f"{meta}: unreadable labels file ({exc})") from exc


def _run_labels(tracking_uri: str, run_id: str) -> list[str]:
    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=tracking_uri).get_run(run_id)
    try:
        return [str(x) for x in json.loads(run.data.params["labels"])]
    except (KeyError, ValueError) as exc:
        raise EvaluationError(f"run {run_id} has no `labels` param") from exc


def load_model(
    ref: str,
    tracking_uri: str | None = None,
    model_labels: Sequence[str] | None = None,
    input_scale: str = "raw",
    image_size: int | None = None,
    batch_size: int = 256,
) -> LoadedModel:
    """A predictor for `ref` (see the module docstring).

    `input_scale` unit|symmetric wraps a foreign Keras model that expects scaled pixels (the
    project's models take raw 0..255 and need "raw"); `model_labels` names its outputs."""
    if ref.startswith(("runs:/", "models:/")):
        return _load_tracked(ref, tracking_uri, batch_size)
    path = Path(ref)
    if path.is_dir():
        for name in ("model.keras", "model.tflite"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise EvaluationError(f"{ref}: folder holds no model.keras or model.tflite")
    if not path.is_file():
        raise EvaluationError(f"{ref}: no such model file (or runs:/..., models:/... URI)")
    labels = list(model_labels) if model_labels else _labels_json(path.parent)
    if path.suffix == ".tflite":
        if labels is None:
            raise EvaluationError(f"{path}: labels.json missing beside it: pass --model-labels")
        return _tflite_model(path, labels)
    if labels is None:
        raise EvaluationError(f"{path}: no labels.json beside it: pass --model-labels")
    import keras

    from emotionops.training.models import ModelConfigError, wrap_pretrained

    try:
        if input_scale != "raw":
            model = wrap_pretrained(path, image_size or 48, labels, labels, input_scale)
        else:
            model = keras.models.load_model(path, compile=False)
    except ModelConfigError as exc:
        raise EvaluationError(str(exc)) from exc
    except Exception as exc:  # zip/h5/deserialisation errors have many types
        raise EvaluationError(f"{path}: cannot load as a Keras model ({exc})") from exc
    return _keras_model(model, labels, str(path), batch_size)


def _keras_model(model: Any, labels: list[str], description: str, batch_size: int) -> LoadedModel:
    shape = model.input_shape
    if len(shape) != 4 or shape[-1] != 1 or shape[1] != shape[2]:
        raise EvaluationError(
            f"{description}: expects input {shape}; this project's models take [N, S, S, 1] raw "
            "pixels (foreign models: pass --input-scale unit|symmetric)"
        )
    n_out = model.output_shape[-1]
    if n_out != len(labels):
        raise EvaluationError(f"{description}: {n_out} outputs but {len(labels)} labels {labels}")
    return LoadedModel(keras_predictor(model, batch_size), labels, int(shape[1]), description)


def _tflite_model(path: Path, labels: list[str]) -> LoadedModel:
    from emotionops.training.export import tflite_input_size, tflite_predict

    size = tflite_input_size(path)
    return LoadedModel(lambda x: tflite_predict(path, x), labels, size, str(path))


def _load_tracked(ref: str, tracking_uri: str | None, batch_size: int) -> LoadedModel:
    if not tracking_uri:
        raise EvaluationError(
            f"{ref} needs an MLflow tracking URI: set EMOTIONOPS_MLFLOW_TRACKING_URI or pass "
            "--tracking-uri"
        )
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from emotionops.tracking import TrackingError, ensure_reachable

    try:
        ensure_reachable(tracking_uri)
    except TrackingError as exc:
        raise EvaluationError(str(exc)) from exc
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    uri = ref
    try:
        if ref.startswith("runs:/"):
            run_id = ref.removeprefix("runs:/").strip("/").split("/")[0]
            if "/" not in ref.removeprefix("runs:/").strip("/"):
                uri = f"runs:/{run_id}/model"  # the Keras model train() logs
        else:
            spec = ref.removeprefix("models:/")
            if spec.startswith("m-"):  # a LoggedModel id (what log_model returns)
                run_id = mlflow.get_logged_model(spec.split("/")[0]).source_run_id
            elif "@" in spec:
                name, alias = spec.split("@", 1)
                run_id = client.get_model_version_by_alias(name, alias).run_id
            elif "/" in spec:
                name, number = spec.split("/", 1)
                run_id = client.get_model_version(name, number).run_id
            else:
                raise EvaluationError(f"{ref}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
        labels = _run_labels(tracking_uri, run_id)
        artifact = ref.removeprefix("runs:/").strip("/").partition("/")[2]
        if ref.startswith("runs:/") and artifact not in ("", "model"):
            # An artifact folder such as tflite/ (what the edge pulls): scored as that file.
            scratch = Path(tempfile.mkdtemp(prefix="emotionops-eval-"))
            atexit.register(shutil.rmtree, scratch, True)
            local = Path(mlflow.artifacts.download_artifacts(ref, dst_path=str(scratch)))
            tflite = local / "model.tflite" if local.is_dir() else local
            if tflite.suffix == ".tflite" and tflite.is_file():
                return _tflite_model(tflite, labels)
        model = mlflow.tensorflow.load_model(uri)
    except MlflowException as exc:
        raise EvaluationError(f"cannot load {ref} from {tracking_uri}: {exc.message}") from exc
    return _keras_model(model, labels, ref, batch_size)


# Data --------------------------------------------------------------------------------------
@dataclass
class EvalSet:
    images: np.ndarray  # uint8 [N, S, S, 1]
    labels: np.ndarray  # indices into `label_names`
    label_names: list[str]
    description: str
    paths: list[str] = field(default_factory=list)
    #: each image's annotator votes (None for an image without); None: the data has none
    votes: list[dict[str, int] | None] | None = None


def resolve_ruler(ruler: str, test: EvalSet) -> str:
    """The ruler a decision is measured on: `auto` is ferplus when the faces carry votes,
    else original; ferplus without votes is an error (not a silent fallback)."""
    if ruler not in RULERS:
        raise EvaluationError(f"unknown ruler {ruler!r}; expected one of {', '.join(RULERS)}")
    has_votes = bool(test.votes) and any(test.votes)
    if ruler == "auto":
        return FERPLUS if has_votes else ORIGINAL
    if ruler == FERPLUS and not has_votes:
        raise EvaluationError(
            f"the ferplus ruler needs votes, and {test.description} carries none (import a "
            "vote table, or set registry.ruler to original or auto)"
        )
    return ruler


def ruled_set(test: EvalSet, ruler: str) -> tuple[EvalSet, int]:
    """The faces and truth of one ruler, and how many faces it leaves out: `original` is
    `test` itself; `ferplus` keeps the faces with a FER+ majority in the label set,
    labelled by it."""
    if ruler == ORIGINAL:
        return test, 0
    truth = majority_indices(test.votes or [None] * len(test.labels), test.label_names)
    kept = np.flatnonzero(truth >= 0)
    if not len(kept):
        raise EvaluationError(
            f"{test.description}: no face has a FER+ majority among {test.label_names}"
        )
    subset = EvalSet(
        test.images[kept],
        truth[kept].astype(np.int32),
        list(test.label_names),
        f"{test.description} ({FERPLUS} majority labels)",
        [test.paths[i] for i in kept] if test.paths else [],
        [test.votes[i] for i in kept] if test.votes else None,
    )
    return subset, len(truth) - len(kept)


def split_eval_set(
    split_csv: Path, faces_root: Path, labels: Sequence[str], image_size: int, split: str = "test"
) -> EvalSet:
    """One split of the project's split file (the frozen test split by default), with its
    images' votes when the file has a `votes` column."""
    from emotionops.training.data import load_arrays

    arrays = load_arrays(split_csv, faces_root, labels, image_size)
    if split not in arrays:
        raise EvaluationError(f"unknown split {split!r}; expected train, val or test")
    a = arrays[split]
    if not len(a):
        raise EvaluationError(f"{split_csv}: the {split} split is empty")
    by_path = split_votes(split_csv, split)
    votes = [by_path.get(p) for p in a.paths] if by_path else None
    return EvalSet(a.images, a.labels, list(labels), f"{split_csv}:{split}", a.paths, votes)


def folder_eval_set(
    folder: Path,
    labels: Sequence[str],
    image_size: int,
    label_map: dict[str, str] | None = None,
    ignore: Sequence[str] = (),
    limit_per_class: int | None = None,
    caps: DatasetParams | None = None,
) -> EvalSet:
    """An external labelled folder of class folders, read like an import: classes map onto
    `labels` (label_map, ignore); unreadable files are errors. A split layout (train/,
    publictest/ ...) is refused: scoring its training images with its test images would
    inflate every figure, so the caller names the split to score. `caps`: the file-size and
    pixel caps of imports (params.dataset; special files and links out are refused too)."""
    from emotionops.dataset.importers import (
        SPLIT_DIRS,
        decode_gray,
        map_label,
        read_item,
        scan_folder,
        square_resize,
    )

    splits = sorted(d.name for d in Path(folder).glob("*/") if d.name.lower() in SPLIT_DIRS)
    if splits:
        tests = [name for name in splits if SPLIT_DIRS[name.lower()] == "test"]
        raise EvaluationError(
            f"{folder} holds split folders ({', '.join(splits)}): evaluate one of them, "
            f"e.g. {Path(folder) / (tests or splits)[0]}"
        )
    caps = caps or DatasetParams()
    mapping = caps.model_copy(update={"label_map": dict(label_map or {}), "ignore": list(ignore)})
    items = scan_folder(Path(folder), "hash")
    index = {lab: i for i, lab in enumerate(labels)}
    images, ys, paths = [], [], []
    taken: dict[str, int] = {}
    for item in items:
        label = map_label(item.source_label, labels, mapping, str(folder))
        if label is None:
            continue
        if limit_per_class is not None and taken.get(label, 0) >= limit_per_class:
            continue
        taken[label] = taken.get(label, 0) + 1
        where = str(item.file)
        data = read_item(item, where, Path(folder), caps.max_file_bytes)
        gray, _ = decode_gray(data, where, caps.max_pixels)
        images.append(square_resize(gray, image_size)[:, :, None])
        ys.append(index[label])
        paths.append(item.origin)
    if not images:
        raise EvaluationError(f"{folder}: no images of labels {list(labels)}")
    return EvalSet(
        np.stack(images).astype(np.uint8),
        np.asarray(ys, dtype=np.int32),
        list(labels),
        str(folder),
        paths,
    )
