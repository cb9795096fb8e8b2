"""One MLflow-tracked training run, in phases that `train()` calls in order:
`resolve_params` (precision for this CPU) -> `prepare_data` -> `build_model` -> `log_inputs`
-> `fit` -> `evaluate_deployed` -> `log_scores` -> `package` (model + TFLite exports) -> the
model card and the DVC export.

Everything the registry gate, the warehouse loaders and the edge service need is logged to
the run, so a model version can always be traced to its data, code and evaluation:
- params: the whole `train` section (augment.* flattened) + labels and data sizes; tags
  dataset_version (hash of the split file), dvc.<out> (DVC md5s from dvc.lock), git_commit,
  test_set_fingerprint;
- per-epoch train_/val_ accuracy and loss and learning_rate (step = epoch);
- test_accuracy, test_macro_f1, test_flip_consistency, per-class
  test_<label>_{precision,recall,specificity,f1,support} (the original labels); when the
  split carries votes, the ferplus ruler on the same faces: test_ferplus_{accuracy,macro_f1,
  n,left_out}, test_ferplus_<label>_recall (and *_network_alone); train_seconds,
  train_images_per_s;
- artifacts: evaluation/ (confusion matrix counts + row-normalised, CSV + PNG; per-class
  JSON + CSV; the same prefixed ferplus_ with votes; metrics.json), curves/ (history.csv, training_curves.png), data/split.csv,
  the Keras model (LoggedModel `name="model"`, signature + input example), tflite/
  (model.tflite float32 + labels.json: the edge downloads `runs:/<run_id>/tflite`),
  tflite_dynamic/ (dynamic-range quantised), parity.json (Keras vs both TFLite files,
  measured on test images), model_card.md.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emotionops.errors import EmotionOpsError
from emotionops.files import atomic_dir
from emotionops.params import TrainParams
from emotionops.training.evaluate import (
    Evaluation,
    evaluate_probs,
    keras_predictor,
    write_evaluation,
)
from emotionops.training.hardware import cpu_model, resolve_precision

if TYPE_CHECKING:
    import keras

    from emotionops.training.data import Datasets

log = logging.getLogger(__name__)

TFLITE_ARTIFACT_PATH = "tflite"  # the edge service pulls runs:/<run_id>/tflite: keep it stable
TFLITE_DYNAMIC_ARTIFACT_PATH = "tflite_dynamic"
EVALUATION_ARTIFACT_PATH = "evaluation"  # warehouse load-run reads it: keep names stable
CURVES_ARTIFACT_PATH = "curves"
PARITY_SAMPLE = 256  # test images compared Keras vs TFLite; one invoke each, ~0.3 ms
EPOCH_KEYS = ("accuracy", "loss")


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
    test_flip_consistency: float | None = None
    tflite_dynamic_parity: float | None = None
    tflite_dynamic_agreement: float | None = None
    train_seconds: float = 0.0
    train_images_per_s: float = 0.0
    predict_images_per_s: float | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    #: the trained network alone, when flip averaging or partners make the deployed model
    network_test_accuracy: float | None = None
    #: its flip check (the deployed model's is 1.0 by construction when it flip-averages)
    network_flip_consistency: float | None = None
    #: the teachers' pass over the train split before fit (distillation), not in train_seconds
    distill_seconds: float | None = None
    #: the ferplus ruler (FER+ majority labels of the test faces); None: the split has no votes
    ferplus: Evaluation | None = None
    ferplus_left_out: int = 0  # test faces without a FER+ majority in the label set
    network_ferplus_accuracy: float | None = None
    network_ferplus_macro_f1: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.ferplus is not None:
            out["ferplus"] = self.ferplus.to_dict()
        return out

    def metrics(self) -> dict[str, Any]:
        """The DVC metrics file (`data/metrics/train.json`): what `dvc metrics diff` compares."""
        return {
            "test_accuracy": self.test_accuracy,
            "test_macro_f1": self.test_macro_f1,
            "val_accuracy": self.val_accuracy,
            "test_flip_consistency": self.test_flip_consistency,
            "network_test_accuracy": self.network_test_accuracy,
            "network_flip_consistency": self.network_flip_consistency,
            "epochs_run": self.epochs_run,
            "train_seconds": round(self.train_seconds, 2),
            "distill_seconds": None
            if self.distill_seconds is None
            else round(self.distill_seconds, 2),
            "train_images_per_s": round(self.train_images_per_s, 1),
            "tflite_parity_max_abs_diff": self.tflite_parity,
            "test_recall": {label: m["recall"] for label, m in self.per_class.items()},
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_test": self.n_test,
            **self.ferplus_metrics(),
        }

    def ferplus_metrics(self) -> dict[str, Any]:
        """The ferplus ruler's DVC metrics; {} (absent, not zero) when the split has no votes."""
        fp = self.ferplus
        if fp is None:
            return {}
        return {
            "test_ferplus_accuracy": fp.accuracy,
            "test_ferplus_macro_f1": fp.macro_f1,
            "test_ferplus_n": fp.n_images,
            "test_ferplus_left_out": self.ferplus_left_out,
            "test_ferplus_recall": {label: m["recall"] for label, m in fp.per_class.items()},
            "network_test_ferplus_accuracy": self.network_ferplus_accuracy,
            "network_test_ferplus_macro_f1": self.network_ferplus_macro_f1,
        }


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


def flat_params(params: TrainParams) -> dict[str, Any]:
    """The train section as MLflow params: nested sections dotted, lists as JSON."""
    out: dict[str, Any] = {}
    for key, value in params.model_dump().items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        elif isinstance(value, list):
            out[key] = json.dumps(value)
        else:
            out[key] = value
    return out


@contextlib.contextmanager
def precision_policy(name: str) -> Iterator[None]:
    """Keras' global dtype policy for the duration (restored after: it is process-wide)."""
    import keras

    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# Callbacks -------------------------------------------------------------------------------
def _current_lr(model: keras.Model) -> float | None:
    import keras

    try:
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return None


def learning_rate_at(params: TrainParams, step: int, steps: int, progress: float) -> float:
    """Learning rate before `step` (0-based, `steps` per epoch): a linear warm-up over
    params.warmup_epochs, then the base rate (constant; plateau, which Keras halves) or a cosine
    from the base rate down to 1% as the decay `progress` goes from 0 to 1."""
    base = params.learning_rate
    warm = params.warmup_epochs * steps
    if step < warm:
        return base * (step + 1) / warm
    if params.lr_schedule != "cosine":
        return base
    progress = min(1.0, max(0.0, progress))
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def decay_progress(
    params: TrainParams, step: int, steps: int, clock_seconds: float, clock_budget: float | None
) -> float:
    """How far the cosine decay has gone (0..1): by steps toward the `epochs` cap or, with a
    time budget, by the clock toward its end (`clock_seconds` of `clock_budget`, both counted
    from the end of the warm-up), whichever is further. Following the clock spends the whole
    budget whatever the machine's pace: planning the epoch count from the first epoch's time
    (tracing included) left 8-9% of it unused."""
    warm = params.warmup_epochs * steps
    by_steps = (step - warm) / max(1, params.epochs * steps - warm)
    by_clock = 0.0
    if clock_budget is not None:
        by_clock = clock_seconds / clock_budget if clock_budget > 0 else 1.0
    return min(1.0, max(0.0, by_steps, by_clock))


def another_epoch_fits(elapsed: float, epoch_seconds: float, budget: float) -> bool:
    """Whether one more epoch at the last epoch's pace ends at most half an epoch past the budget."""
    return elapsed + 0.5 * epoch_seconds <= budget


def _callbacks(
    params: TrainParams, steps: int, images_per_epoch: int, progress: bool
) -> tuple[list[keras.callbacks.Callback], dict[str, Any]]:
    """The learning-rate plan, per-epoch MLflow metrics, a concise console line per epoch, and
    the time budget. Returns (callbacks, timing dict filled during fit).

    With `max_minutes`, the cosine decay follows the clock (`decay_progress`) so it reaches
    its floor when the budget ends, and the run stops at the last epoch that fits
    (`another_epoch_fits`); `epochs` stays a cap.
    """
    import keras
    import mlflow

    budget = params.max_minutes * 60 if params.max_minutes else None
    timing: dict[str, Any] = {"epoch_seconds": [], "stopped_by_budget": False, "expected": None}
    warm_steps = params.warmup_epochs * steps

    class Plan(keras.callbacks.Callback):
        """Sets the learning rate before every step (a plain variable, so the saved model
        needs no custom schedule class) and ends the run when the budget is spent."""

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            timing["fit_start"] = time.perf_counter()
            self._step = 0
            self._warm_end: float | None = None

        def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if self._step == warm_steps:
                self._warm_end = time.perf_counter()
            if params.lr_schedule != "plateau" or self._step < warm_steps:
                clock, clock_budget = 0.0, None
                if budget is not None and self._warm_end is not None:
                    clock = time.perf_counter() - self._warm_end
                    clock_budget = budget - (self._warm_end - timing["fit_start"])
                self.model.optimizer.learning_rate = learning_rate_at(
                    params,
                    self._step,
                    steps,
                    decay_progress(params, self._step, steps, clock, clock_budget),
                )
            self._step += 1

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if budget is None:
                return
            elapsed = time.perf_counter() - timing["fit_start"]
            pace = timing["epoch_seconds"][-1]
            timing["expected"] = min(
                params.epochs, epoch + 1 + int(max(0.0, budget - elapsed) / pace + 0.5)
            )
            if epoch == 0 and progress:
                print(
                    f"epoch 1 took {elapsed:.0f}s: about {timing['expected']} epochs fit the "
                    f"{params.max_minutes:g}-minute budget (the learning rate follows the clock)",
                    file=sys.stderr,
                    flush=True,
                )
            if not another_epoch_fits(elapsed, pace, budget):
                timing["stopped_by_budget"] = True
                self.model.stop_training = True

    class EpochLog(keras.callbacks.Callback):
        """Per-epoch metrics with step=epoch (autolog needs tensorboard, which is absent)."""

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            seconds = time.perf_counter() - self._start
            timing["epoch_seconds"].append(seconds)
            metrics = {}
            for key, value in (logs or {}).items():
                name = key if key.startswith("val_") or key == "learning_rate" else f"train_{key}"
                metrics[name] = float(value)
            lr = _current_lr(self.model)
            if lr is not None:
                metrics["learning_rate"] = lr
            metrics["epoch_seconds"] = seconds
            mlflow.log_metrics(metrics, step=epoch)
            if progress:
                val = (
                    f" val_loss {metrics['val_loss']:.4f} val_acc {metrics['val_accuracy']:.3f}"
                    if "val_loss" in metrics
                    else ""
                )
                total = f"~{timing['expected']}" if timing["expected"] else params.epochs
                print(
                    f"epoch {epoch + 1}/{total}: loss "
                    f"{metrics.get('train_loss', 0):.4f} acc {metrics.get('train_accuracy', 0):.3f}"
                    f"{val} lr {lr or 0:.2e} {seconds:.1f}s ({images_per_epoch / seconds:.0f} img/s)",
                    file=sys.stderr,
                    flush=True,
                )

    # EpochLog first: it reads the rate the epoch ran with before Plan's next step changes it.
    return [EpochLog(), Plan()], timing


def validation_callbacks(params: TrainParams, patience: int) -> list[keras.callbacks.Callback]:
    """Early stopping on `monitor` with the best epoch's weights restored, and for the
    plateau schedule a halving of the rate when that same metric stalls."""
    import keras

    mode = "min" if params.monitor.endswith("loss") else "max"  # said, not guessed by Keras
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping(
            monitor=params.monitor, mode=mode, patience=patience, restore_best_weights=True
        )
    ]
    if params.lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=params.monitor, mode=mode, factor=0.5, patience=max(1, patience // 2)
            )
        )
    return callbacks


# Artifacts -------------------------------------------------------------------------------
def write_history(history: dict[str, list[float]], out: Path) -> Path:
    """history.csv (one row per epoch; DVC plots read it) and training_curves.png."""
    out.mkdir(parents=True, exist_ok=True)
    keys = sorted(history)
    n = max((len(v) for v in history.values()), default=0)
    with (out / "history.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", *keys])
        for i in range(n):
            writer.writerow([i, *(history[k][i] if i < len(history[k]) else "" for k in keys)])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, EPOCH_KEYS, strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            if f"{prefix}{key}" in history:
                ax.plot(history[f"{prefix}{key}"], style, label=f"{prefix or 'train_'}{key}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=100)
    plt.close(fig)
    return out


def model_card(
    labels: list[str],
    params: TrainParams,
    result: TrainResult,
    dataset_version: str | None,
    dvc_hashes: dict[str, str],
    commit: str | None,
    parity: dict[str, dict[str, float]],
) -> str:
    """A short model card (Mitchell et al. 2019 headings) in Markdown."""
    rows = "\n".join(
        f"| {lab} | {m['precision']:.3f} | {m['recall']:.3f} | {m['specificity']:.3f} | "
        f"{m['f1']:.3f} | {int(m['support'])} |"
        for lab, m in result.per_class.items()
    )
    flip = (
        f"{result.test_flip_consistency:.3f}" if result.test_flip_consistency is not None else "-"
    )
    return f"""# Model card: facial-emotion classifier ({params.model})

## Model details
- Architecture: `{params.model}`; input float32 [N, {params.image_size}, {params.image_size}, 1]
  raw grayscale pixels 0..255 (the model rescales); output probabilities over {labels}.
- Deployed as: {_composition(params, result)}
- Training: {result.epochs_run} epochs, batch {params.batch_size}, learning rate
  {params.learning_rate} ({params.lr_schedule}), balance `{params.balance}`, targets
  `{params.targets}`, precision
  `{params.precision}`, seed {params.seed}. MLflow run `{result.run_id}`; git commit
  `{commit or "unknown"}`.
- Exports: TFLite float32 (`tflite/`, parity max |diff| {parity["float"]["max_abs_diff"]:.2e}),
  dynamic-range quantised (`tflite_dynamic/`, parity max |diff|
  {parity["dynamic"]["max_abs_diff"]:.2e}, top-1 agreement
  {parity["dynamic"]["top1_agreement"]:.3f}).

## Intended use
Counting the emotions of faces per time window at venues, on the edge device, where only
aggregate counts leave the device. Not for decisions about individuals.

## Out-of-scope and prohibited uses
Emotion recognition in workplaces and education is prohibited in the EU (AI Act Art.
5(1)(f)); emotion data is sensitive under the GDPR. Do not use for hiring, grading,
policing, surveillance of individuals, or any inference about a person's inner state.

## Data
Dataset version `{dataset_version or "unversioned"}` (hash of the split file); DVC outputs
{", ".join(f"`{k}` md5 `{v}`" for k, v in dvc_hashes.items()) or "(not versioned by DVC)"}.
Train {result.n_train}, validation {result.n_val} (early stopping and selection), test
{result.n_test} images (split by content hash; never used for training or selection).

## Evaluation (test split)
On the original labels{" (the folders the faces were imported from)" if result.ferplus else ""}:
accuracy **{result.test_accuracy:.3f}**, macro-F1 **{result.test_macro_f1:.3f}**;
flip consistency (a mirrored face keeps its predicted label) {flip}.

| label | precision | recall | specificity | F1 | support |
| --- | --- | --- | --- | --- | --- |
{rows}
{_ferplus_card(result)}
## Limitations
Trained on 48x48 grayscale face crops: faces in profile, occluded, very small or under
unusual lighting are out of distribution. Expressions are posed or scraped from the web and
do not equal felt emotions. Accuracy differs by label (see recall above); check it per
demographic group on your own data before deployment.
"""


def _ferplus_card(result: TrainResult) -> str:
    """The model card's FER+ ruler paragraph ('' when the split carries no votes)."""
    fp = result.ferplus
    if fp is None:
        return ""
    alone = (
        f" The trained network alone: accuracy {result.network_ferplus_accuracy:.3f}, "
        f"macro-F1 {result.network_ferplus_macro_f1:.3f}."
        if result.network_ferplus_accuracy is not None
        and result.network_ferplus_macro_f1 is not None
        else ""
    )
    rows = "\n".join(
        f"| {lab} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {int(m['support'])} |"
        for lab, m in fp.per_class.items()
    )
    return f"""
On the FER+ majority labels of the same faces (annotator votes; {fp.n_images} faces,
{result.ferplus_left_out} without a majority in the label set left out): accuracy
**{fp.accuracy:.3f}**, macro-F1 **{fp.macro_f1:.3f}**.{alone}

| label | precision | recall | F1 | support |
| --- | --- | --- | --- | --- |
{rows}
"""


def _composition(params: TrainParams, result: TrainResult) -> str:
    """How the deployed model is put together, in one sentence for the model card."""
    parts = [f"the trained `{params.model}` network"]
    if params.partners:
        parts.append(
            "frozen partner networks "
            + ", ".join(f"`{p}`" for p in params.partners)
            + " (trained elsewhere on FER2013's training split), weighted equally"
        )
    text = " averaged with ".join(parts)
    if params.flip_average:
        text += "; every member also sees the mirrored face (test-time flip averaging)"
    if params.distill_from:
        text += (
            f". The network was trained on targets mixing the true label with "
            f"{params.distill_weight:g} of the soft labels of "
            + ", ".join(f"`{t}`" for t in params.distill_from)
            + f" (temperature {params.distill_temperature:g})"
        )
    if result.network_test_accuracy is not None:
        text += f". The trained network alone: test accuracy {result.network_test_accuracy:.3f}"
        if result.network_flip_consistency is not None:
            text += f", flip consistency {result.network_flip_consistency:.3f}"
    return text + "."


def _float32_twin(model: keras.Model, params: TrainParams, labels: list[str]) -> keras.Model:
    """The same network in float32 (what is logged and exported after mixed-precision
    training: TFLite and the edge expect float32 graphs)."""
    from emotionops.training.models import build_from_params

    if params.precision == "float32":
        return model
    with precision_policy("float32"):
        twin = build_from_params(params, labels)
    twin.set_weights(model.get_weights())
    return twin


# The phases -----------------------------------------------------------------------------
def resolve_params(params: TrainParams, progress: bool) -> TrainParams:
    """The params this machine trains with: `precision: auto` becomes mixed_bfloat16 or
    float32 from the CPU's flags."""
    precision = resolve_precision(params.precision)
    if progress and params.precision == "auto":
        print(f"precision {precision} (auto, on {cpu_model()})", file=sys.stderr, flush=True)
    return params.model_copy(update={"precision": precision})


@dataclass
class Prepared:
    """The split as tf.data streams, ready for fit (targets as vectors where the loss needs
    them), and what preparing it cost."""

    data: Datasets
    train: Any  # tf.data.Dataset
    val: Any | None
    categorical: bool
    distill_seconds: float | None


def prepare_data(
    split_csv: Path, faces_root: Path, labels: list[str], params: TrainParams, progress: bool
) -> Prepared:
    """Decode the split once into train/val/test streams (augmentation, balance, even
    batches); soft targets from the teachers when distilling; vectors for smoothing/mixup."""
    from emotionops.training.data import SplitArrays, make_datasets, mixup
    from emotionops.training.distill import distilled_targets_for

    distill_seconds: float | None = None

    def distilled_targets(train_split: SplitArrays) -> np.ndarray:
        nonlocal distill_seconds
        start = time.perf_counter()
        targets = distilled_targets_for(params, labels, train_split)
        distill_seconds = time.perf_counter() - start
        if progress:
            print(
                f"soft labels from {', '.join(params.distill_from)} for {len(targets)} train "
                f"faces: {distill_seconds:.0f}s",
                file=sys.stderr,
                flush=True,
            )
        return targets

    data = make_datasets(
        split_csv,
        faces_root,
        labels,
        params.image_size,
        params.batch_size,
        params.seed,
        augment=params.augment,
        balance=params.balance,
        train_targets=distilled_targets if params.distill_from else None,
        targets=params.targets,
    )
    if data.dropped:
        text = f"train.targets {params.targets}: " + "; ".join(
            f"{data.dropped[f'n_{split}_dropped_no_votes']} {split} images without votes and "
            f"{data.dropped[f'n_{split}_dropped_no_target']} whose votes give no target in the "
            f"labels dropped, {data.count(split)} kept"
            for split in ("train", "val")
            if f"n_{split}_dropped_no_votes" in data.dropped
        )
        log.info(text)
        if progress:
            print(text, file=sys.stderr, flush=True)
    if data.count("test") == 0:
        raise TrainingError(
            f"{split_csv}: the test split is empty; the registry gate needs test metrics"
        )
    if len(set(data.arrays["train"].labels.tolist())) < 2:
        raise TrainingError(f"{split_csv}: the train split holds fewer than two labels")
    # Soft labels (distillation, votes), label smoothing and mixup need target vectors: the
    # loss is then categorical cross-entropy, which takes probability targets as they are
    # (smoothing blends them with the uniform distribution, mixup blends two of them).
    soft = bool(params.distill_from) or params.targets == "votes"
    categorical = bool(params.label_smoothing or soft or params.augment.mixup)
    train_ds, val_ds = data.train, data.val
    if categorical:
        n = len(labels)
        if not soft:  # a soft train stream already yields vectors
            train_ds = train_ds.map(lambda x, y: (x, _one_hot(y, n)))
        val_ds = val_ds.map(lambda x, y: (x, _one_hot(y, n))) if val_ds is not None else None
    if params.augment.mixup:
        train_ds = mixup(train_ds, params.augment.mixup, params.seed).prefetch(2)
    return Prepared(data, train_ds, val_ds, categorical, distill_seconds)


def build_model(params: TrainParams, labels: list[str], categorical: bool) -> keras.Model:
    """The network of `params.model`, compiled in the training precision."""
    import keras

    from emotionops.training.models import build_from_params

    with precision_policy(params.precision):
        model = build_from_params(params, labels)
        model.compile(
            optimizer=_optimizer(params),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing)
            if categorical
            else "sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    return model


def log_inputs(
    params: TrainParams,
    requested: dict[str, str],
    labels: list[str],
    prepared: Prepared,
    model: keras.Model,
    patience: int,
    tags: dict[str, str],
) -> None:
    """Every param (precision, targets and partners as resolved, and as asked: `requested`),
    data sizes and the run's tags."""
    import mlflow

    data = prepared.data
    mlflow.log_params(
        {
            **flat_params(params),
            **{f"{key}_requested": value for key, value in requested.items()},
            "labels": json.dumps(list(labels)),
            "n_classes": len(labels),
            "train_batch_size_effective": data.train_batch_size,
            "steps_per_epoch": data.steps_per_epoch,
            "early_stopping_patience": patience if data.count("val") else "off",
            "n_train": data.count("train"),
            "n_val": data.count("val"),
            "n_test": data.count("test"),
            **data.dropped,  # train.targets majority | votes: train images left out, by why
            "model_parameters": model.count_params(),
        }
    )
    mlflow.set_tags(
        {**tags, "test_set_fingerprint": fingerprint_test_set(data), "cpu_model": cpu_model()}
    )


@dataclass
class Fitted:
    history: dict[str, list[float]]
    epochs_run: int
    train_seconds: float
    images_per_s: float


def fit(
    model: keras.Model,
    prepared: Prepared,
    labels: list[str],
    params: TrainParams,
    patience: int,
    progress: bool,
) -> Fitted:
    """Fit with the learning-rate plan, per-epoch MLflow metrics, the time budget and (with a
    val split) early stopping on params.monitor, best weights restored."""
    from emotionops.training.data import class_weights

    data = prepared.data
    images_per_epoch = data.steps_per_epoch * data.train_batch_size
    callbacks, timing = _callbacks(params, data.steps_per_epoch, images_per_epoch, progress)
    if prepared.val is not None:
        callbacks += validation_callbacks(params, patience)
    start = time.perf_counter()
    history = model.fit(
        prepared.train,
        validation_data=prepared.val,
        epochs=params.epochs,
        steps_per_epoch=data.steps_per_epoch,
        callbacks=callbacks,
        class_weight=class_weights(data.arrays["train"].labels, len(labels))
        if params.balance == "class_weight"
        else None,
        shuffle=False,  # the tf.data pipeline shuffles (seeded); Keras would only warn
        verbose=0,
    )
    seconds = time.perf_counter() - start
    hist = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    epochs_run = len(hist["loss"])
    if timing["stopped_by_budget"]:
        log.info("stopped after epoch %d: the train.max_minutes budget is spent", epochs_run)
    rate = images_per_epoch * epochs_run / seconds if seconds else 0.0
    return Fitted(hist, epochs_run, seconds, rate)


@dataclass
class Scores:
    """The deployed model and how it scored; `alone` is the trained network by itself when
    flip averaging or partners make the deployed model something else."""

    deployed: keras.Model
    val_accuracy: float | None
    test: Evaluation
    alone: Evaluation | None


def test_votes(split_csv: Path, data: Datasets) -> list[dict[str, int] | None] | None:
    """The test faces' votes in the order of data.arrays["test"] (split.csv's `votes`
    column); None when the split carries none (the ferplus ruler is then absent)."""
    from emotionops.dataset.votes import split_votes

    by_path = split_votes(split_csv, "test")
    return [by_path.get(p) for p in data.arrays["test"].paths] if by_path else None


def evaluate_deployed(
    model: keras.Model,
    params: TrainParams,
    labels: list[str],
    data: Datasets,
    votes: list[dict[str, int] | None] | None = None,
) -> Scores:
    """Assemble the deployed model (float32 network, mirror, partners) and score it, and the
    network alone, on the frozen test split (val accuracy for the record); with the test
    faces' `votes`, on both rulers."""
    from emotionops.training.models import build_partners, inference_model

    network = _float32_twin(model, params, labels)
    deployed = inference_model(
        network, params.image_size, params.flip_average, build_partners(params, labels)
    )
    val_accuracy: float | None = None
    if data.val is not None:
        val_probs = np.asarray(deployed.predict(data.val, verbose=0))
        val_accuracy = float(np.mean(val_probs.argmax(1) == data.arrays["val"].labels))
    test = data.arrays["test"]
    evaluation = evaluate_probs(
        keras_predictor(deployed, 256), test.images, test.labels, labels, votes=votes
    )
    alone = None
    if deployed is not network:
        alone = evaluate_probs(
            keras_predictor(network, 256), test.images, test.labels, labels, votes=votes
        )
    return Scores(deployed, val_accuracy, evaluation, alone)


def log_scores(scores: Scores, fitted: Fitted, distill_seconds: float | None, tmp: Path) -> None:
    """Test metrics (deployed model, network alone), timing, and the evaluation and curve
    artifacts the warehouse and the dashboard read."""
    import mlflow

    evaluation = scores.test
    metrics = {
        **evaluation.metrics("test_"),
        "epochs_run": float(fitted.epochs_run),
        "train_seconds": fitted.train_seconds,
        "train_images_per_s": fitted.images_per_s,
    }
    if scores.val_accuracy is not None:
        metrics["final_val_accuracy"] = scores.val_accuracy
    if evaluation.predict_images_per_s:
        metrics["predict_images_per_s"] = evaluation.predict_images_per_s
    if distill_seconds is not None:
        metrics["distill_seconds"] = distill_seconds
    if scores.alone is not None:
        # What flip averaging / partners add, for the record; and the flip check of the
        # network itself (a flip-averaged model is mirror-invariant by construction).
        metrics["test_accuracy_network_alone"] = scores.alone.accuracy
        metrics["test_flip_consistency_network_alone"] = scores.alone.flip_consistency
        if scores.alone.ferplus is not None:
            metrics["test_ferplus_accuracy_network_alone"] = scores.alone.ferplus.accuracy
            metrics["test_ferplus_macro_f1_network_alone"] = scores.alone.ferplus.macro_f1
    mlflow.log_metrics(metrics)
    write_evaluation(tmp / "evaluation", evaluation)
    mlflow.log_artifacts(str(tmp / "evaluation"), EVALUATION_ARTIFACT_PATH)
    write_history(fitted.history, tmp / "curves")
    mlflow.log_artifacts(str(tmp / "curves"), CURVES_ARTIFACT_PATH)


@dataclass
class Packaged:
    model_uri: str
    tflite_dir: Path
    parity: dict[str, dict[str, float]]


def package(
    deployed: keras.Model, labels: list[str], params: TrainParams, data: Datasets, tmp: Path
) -> Packaged:
    """Log the deployed model (signature, input example) and its TFLite exports (float32,
    what the edge pulls; dynamic-range), with their parity against Keras on test faces."""
    import mlflow
    from mlflow.models import infer_signature

    from emotionops.training.export import export_tflite, parity_report

    test = data.arrays["test"]
    x_example = test.images[:2].astype(np.float32)
    signature = infer_signature(x_example, deployed.predict(x_example, verbose=0))
    info = mlflow.tensorflow.log_model(
        deployed,
        name="model",
        signature=signature,
        input_example=x_example,
        pip_requirements=model_requirements(),
    )
    sample = test.images[:PARITY_SAMPLE]
    parity: dict[str, dict[str, float]] = {}
    for kind, artifact, quantize in (
        ("float", TFLITE_ARTIFACT_PATH, "none"),
        ("dynamic", TFLITE_DYNAMIC_ARTIFACT_PATH, "dynamic"),
    ):
        path = export_tflite(deployed, tmp / artifact, labels, params.image_size, quantize=quantize)
        parity[kind] = {
            **parity_report(deployed, path, sample),
            "bytes": float(path.stat().st_size),
        }
        mlflow.log_artifacts(str(tmp / artifact), artifact)
    mlflow.log_dict(parity, "parity.json")
    mlflow.set_tag("tflite_parity", f"{parity['float']['max_abs_diff']:.3g}")
    mlflow.log_metrics(
        {
            "tflite_parity_max_abs_diff": parity["float"]["max_abs_diff"],
            "tflite_dynamic_parity_max_abs_diff": parity["dynamic"]["max_abs_diff"],
            "tflite_dynamic_top1_agreement": parity["dynamic"]["top1_agreement"],
        }
    )
    return Packaged(info.model_uri, tmp / TFLITE_ARTIFACT_PATH, parity)


# The stage ------------------------------------------------------------------------------
RUN_KEY_TAG = "emotionops.run_key"


def find_finished_run(
    tracking_uri: str, run_key: str, dataset_version: str, experiment: str = "emotionops"
) -> str | None:
    """The id of a finished run tagged with `run_key` on `dataset_version` (the oldest), else
    None: lets a scheduler's retry or re-run of one data interval reuse its training run."""
    from emotionops.tracking import TrackingError, ensure_reachable

    try:
        ensure_reachable(tracking_uri)
    except TrackingError as exc:
        raise TrainingError(str(exc)) from exc
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    key = run_key.replace("'", "")
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}' and "
        f"tags.dataset_version = '{dataset_version}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def train(
    split_csv: Path,
    faces_root: Path,
    labels: list[str],
    params: TrainParams,
    tracking_uri: str,
    experiment: str = "emotionops",
    dataset_version: str | None = None,
    model_name: str | None = None,
    patience: int | None = None,
    dvc_hashes: dict[str, str] | None = None,
    export_dir: Path | None = None,
    progress: bool = True,
    run_tags: dict[str, str] | None = None,
) -> TrainResult:
    """Train `params.model` on the split CSV and log everything to a new MLflow run
    (`run_tags` are added to its tags).

    `model_name` is only recorded as a tag (the registry step registers the result); early
    stopping watches params.monitor with `patience` (default params.patience) epochs when a
    val split exists and restores the best weights. `export_dir` also receives model.keras,
    model.tflite, labels.json and model_card.md (the DVC train stage's output)."""
    from emotionops.training.data import resolve_targets
    from emotionops.training.models import resolve_partners

    labels = list(labels)
    requested = {
        "precision": params.precision,
        "targets": params.targets,
        "partners": params.partners if params.partners == "auto" else json.dumps(params.partners),
    }
    params = resolve_params(params, progress)
    targets = resolve_targets(params.targets, split_csv)
    params = params.model_copy(
        update={"targets": targets, "partners": resolve_partners(params.partners, targets)}
    )
    from emotionops.tracking import TrackingError, ensure_reachable

    try:
        ensure_reachable(tracking_uri)
    except TrackingError as exc:
        raise TrainingError(str(exc)) from exc
    import keras
    import mlflow

    patience = patience or params.patience
    dvc_hashes = dvc_hashes or {}
    keras.utils.set_random_seed(params.seed)
    prepared = prepare_data(split_csv, faces_root, labels, params, progress)
    data = prepared.data
    model = build_model(params, labels, prepared.categorical)

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    commit = git_commit()
    tags = {
        "dataset_version": dataset_version or "unversioned",
        "emotionops.stage": "train",
        **{f"dvc.{path}": md5 for path, md5 in dvc_hashes.items()},
        **({"model_name": model_name} if model_name else {}),
        **({"git_commit": commit} if commit else {}),
        **(run_tags or {}),
    }
    with mlflow.start_run() as run, tempfile.TemporaryDirectory(prefix="emotionops-") as tmp:
        log_inputs(params, requested, labels, prepared, model, patience, tags)
        fitted = fit(model, prepared, labels, params, patience, progress)
        scores = evaluate_deployed(model, params, labels, data, test_votes(split_csv, data))
        log_scores(scores, fitted, prepared.distill_seconds, Path(tmp))
        split_copy = Path(tmp) / "data" / "split.csv"
        split_copy.parent.mkdir()
        shutil.copyfile(split_csv, split_copy)
        mlflow.log_artifact(str(split_copy), "data")
        packaged = package(scores.deployed, labels, params, data, Path(tmp))
        result = _result(run.info.run_id, packaged, scores, fitted, prepared, dataset_version)
        card = model_card(
            labels, params, result, dataset_version, dvc_hashes, commit, packaged.parity
        )
        mlflow.log_text(card, "model_card.md")
        if export_dir is not None:
            _export(export_dir, scores.deployed, packaged.tflite_dir, card)
    log.info(
        "run %s: test_accuracy=%.3f macro_f1=%.3f epochs=%d tflite_parity=%.2g",
        result.run_id,
        result.test_accuracy,
        result.test_macro_f1,
        result.epochs_run,
        result.tflite_parity,
    )
    return result


def _result(
    run_id: str,
    packaged: Packaged,
    scores: Scores,
    fitted: Fitted,
    prepared: Prepared,
    dataset_version: str | None,
) -> TrainResult:
    data, evaluation, alone, parity = prepared.data, scores.test, scores.alone, packaged.parity
    return TrainResult(
        run_id=run_id,
        model_uri=packaged.model_uri,
        test_accuracy=evaluation.accuracy,
        val_accuracy=scores.val_accuracy,
        n_train=data.count("train"),
        n_val=data.count("val"),
        n_test=data.count("test"),
        epochs_run=fitted.epochs_run,
        per_class=evaluation.per_class,
        tflite_parity=parity["float"]["max_abs_diff"],
        test_macro_f1=evaluation.macro_f1,
        dataset_version=dataset_version,
        tflite_uri=f"runs:/{run_id}/{TFLITE_ARTIFACT_PATH}",
        confusion=evaluation.confusion,
        test_flip_consistency=evaluation.flip_consistency,
        tflite_dynamic_parity=parity["dynamic"]["max_abs_diff"],
        tflite_dynamic_agreement=parity["dynamic"]["top1_agreement"],
        train_seconds=fitted.train_seconds,
        train_images_per_s=fitted.images_per_s,
        predict_images_per_s=evaluation.predict_images_per_s,
        history=fitted.history,
        network_test_accuracy=alone.accuracy if alone else None,
        network_flip_consistency=alone.flip_consistency if alone else None,
        distill_seconds=prepared.distill_seconds,
        ferplus=evaluation.ferplus,
        ferplus_left_out=evaluation.ferplus_left_out,
        network_ferplus_accuracy=alone.ferplus.accuracy if alone and alone.ferplus else None,
        network_ferplus_macro_f1=alone.ferplus.macro_f1 if alone and alone.ferplus else None,
    )


def _optimizer(params: TrainParams) -> keras.optimizers.Optimizer:
    """params.optimizer at params.learning_rate (the Plan callback moves the rate per step)."""
    import keras

    if params.optimizer == "sgd":
        return keras.optimizers.SGD(
            learning_rate=params.learning_rate,
            momentum=0.9,
            nesterov=True,
            weight_decay=params.weight_decay or None,
        )
    if params.optimizer == "adamw":
        return keras.optimizers.AdamW(
            learning_rate=params.learning_rate, weight_decay=params.weight_decay
        )
    return keras.optimizers.Adam(learning_rate=params.learning_rate)


def _one_hot(y: Any, n: int) -> Any:
    import tensorflow as tf

    return tf.one_hot(y, n)


def _export(out: Path, model: keras.Model, tflite_dir: Path, card: str) -> None:
    """model.keras + model.tflite + labels.json + model_card.md, replacing `out` as a whole
    (a DVC output must not keep files from an earlier run)."""
    with atomic_dir(Path(out)) as staging:
        model.save(staging / "model.keras")
        for name in ("model.tflite", "labels.json"):
            shutil.copyfile(tflite_dir / name, staging / name)
        (staging / "model_card.md").write_text(card, encoding="utf-8")
