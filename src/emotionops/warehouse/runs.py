"""`warehouse load-run <run id>`: copy a finished MLflow training run into the reporting tables.

What `training.train.train` logs is read back through the tracking server: params and tags,
the per-epoch metric histories (train_/val_ accuracy and loss, step = epoch), the test
metrics, and the machine-readable evaluation artifacts (evaluation/per_class_metrics.json,
evaluation/confusion_matrix.csv). Registered versions of the run bring the alias moves that
the registry recorded on them (their `audit` tag). Everything goes into training_run,
epoch_metric, class_metric, confusion_cell and model_promotion in one transaction, keyed on
the run id (and natural keys), so loading a run twice changes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from emotionops.warehouse.db import BATCH_SIZE, WarehouseError, write_tables
from emotionops.warehouse.loaders import check_rows
from emotionops.warehouse.schema import (
    class_metric,
    confusion_cell,
    epoch_metric,
    model_promotion,
    training_run,
)

EVALUATION_DIR = "evaluation"
EPOCH_METRICS = ("train_accuracy", "train_loss", "val_accuracy", "val_loss")
EVAL_SPLIT = "test"


@dataclass
class RunReport:
    """The warehouse rows of one MLflow run, ready to load."""

    run_id: str
    labels: list[str]
    training_run: dict[str, Any]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    classes: list[dict[str, Any]] = field(default_factory=list)
    confusion: list[dict[str, Any]] = field(default_factory=list)
    promotions: list[dict[str, Any]] = field(default_factory=list)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None and number.is_integer() else None


def parse_confusion_csv(text: str, labels: list[str]) -> list[dict[str, Any]]:
    """evaluation/confusion_matrix.csv (header `true\\predicted,<labels>`, one row per true
    label) -> one row per (true, predicted) cell."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0][1:] != labels:
        raise WarehouseError(
            f"confusion_matrix.csv header {rows[0][1:] if rows else []} does not match the "
            f"run's labels {labels}"
        )
    cells = []
    for row in rows[1:]:
        if not row:
            continue
        true_label, counts = row[0], row[1:]
        if true_label not in labels or len(counts) != len(labels):
            raise WarehouseError(f"confusion_matrix.csv: malformed row {row}")
        for pred_label, count in zip(labels, counts, strict=True):
            cells.append(
                {
                    "eval_split": EVAL_SPLIT,
                    "true_label": true_label,
                    "pred_label": pred_label,
                    "n_images": _int(count),
                }
            )
    return cells


#: training_run.key_params: the recipe at a glance (param name as logged -> key shown).
#: Everything else the run logged stays in MLflow; augment.* params follow, flat.
KEY_PARAMS = (
    ("model", "model"),
    ("image_size", "image_size"),
    ("width", "width"),
    ("weights", "weights"),
    ("init_from", "init_from"),
    ("batch_size", "batch_size"),
    ("optimizer", "optimizer"),
    ("learning_rate", "learning_rate"),
    ("lr_schedule", "lr_schedule"),
    ("epochs", "epochs"),
    ("max_minutes", "max_minutes"),
    ("precision", "precision"),
    ("partners", "partners"),
    ("flip_average", "flip_average"),
    ("distill_from", "distill_from"),
    ("label_smoothing", "label_smoothing"),
    ("balance", "balance"),
)
AUGMENT_PREFIX = "augment."
KEY_PARAMS_LIMIT = training_run.c.key_params.type.length


def _param_value(text: str) -> Any:
    """A logged param back as JSON: MLflow keeps strings ("48", '["fer"]', "True", "")."""
    if text in ("True", "False"):
        return text == "True"
    if text in ("None", ""):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def key_params(params: dict[str, str]) -> str | None:
    """The recipe's main params as a flat JSON object (training_run.key_params): KEY_PARAMS
    in order, then the augment.* params under their logged names (flat, so any table can
    show each as a row). Under the column's 2000 characters: should values be long, the
    augment.* params go first, then the last params. None when none of them was logged."""
    picked = {key: _param_value(params[name]) for name, key in KEY_PARAMS if name in params}
    picked |= {
        name: _param_value(value)
        for name, value in sorted(params.items())
        if name.startswith(AUGMENT_PREFIX)
    }
    text = json.dumps(picked, separators=(",", ":"))
    while picked and len(text) > KEY_PARAMS_LIMIT:
        augment = [k for k in picked if k.startswith(AUGMENT_PREFIX)]
        picked.pop(augment[-1] if augment else next(reversed(picked)))
        text = json.dumps(picked, separators=(",", ":"))
    return text if picked else None


def _last(points: list) -> float | None:
    """The value at the last step (epoch) of a metric history."""
    return _float(max(points, key=lambda p: (p.step, p.timestamp)).value) if points else None


def _duration(metrics: dict[str, float]) -> float | None:
    """Training time: fit (train_seconds) plus the teachers' pass (distill_seconds)."""
    parts = [_float(metrics.get(k)) for k in ("train_seconds", "distill_seconds")]
    if parts[0] is None:
        return None
    return sum(p for p in parts if p is not None)


def read_run(tracking_uri: str, run_id: str, run_date: str | None = None) -> RunReport:
    """Read everything the warehouse keeps about `run_id` from the tracking server."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from emotionops.registry import audit_moves
    from emotionops.tracking import TrackingError, ensure_reachable

    try:
        ensure_reachable(tracking_uri)
    except TrackingError as exc:
        raise WarehouseError(str(exc)) from exc
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise WarehouseError(f"no MLflow run {run_id!r} at {tracking_uri}: {exc.message}") from exc
    if run.info.status != "FINISHED":
        raise WarehouseError(
            f"run {run_id} is {run.info.status}: only finished runs are loaded into the warehouse"
        )
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    try:
        labels = [str(x) for x in json.loads(params["labels"])]
    except (KeyError, ValueError, TypeError) as exc:
        raise WarehouseError(
            f"run {run_id} has no `labels` param: was it logged by `emotionops train`?"
        ) from exc

    try:
        history = {name: client.get_metric_history(run_id, name) for name in EPOCH_METRICS}
        versions = client.search_model_versions(f"run_id = '{run_id}'")
        with tempfile.TemporaryDirectory(prefix="emotionops-run-") as tmp:
            fetched = {
                name: Path(client.download_artifacts(run_id, f"{EVALUATION_DIR}/{name}", tmp))
                for name in ("per_class_metrics.json", "confusion_matrix.csv")
            }  # only the two files (not the plots): no progress bars, less traffic
            per_class = json.loads(fetched["per_class_metrics.json"].read_text())
            confusion_text = fetched["confusion_matrix.csv"].read_text()
    except (MlflowException, OSError, ValueError) as exc:
        raise WarehouseError(
            f"run {run_id}: cannot read its metrics or {EVALUATION_DIR}/ artifacts "
            f"(per_class_metrics.json, confusion_matrix.csv): {exc}"
        ) from exc

    by_epoch: dict[int, dict[str, Any]] = {}
    for name, points in history.items():
        for point in points:
            by_epoch.setdefault(int(point.step), {"run_id": run_id, "epoch": int(point.step)})[
                name
            ] = point.value

    started = datetime.fromtimestamp(run.info.start_time / 1000, UTC)
    mine = [v for v in versions if v.run_id == run_id]
    version = max(mine, key=lambda v: int(v.version)) if mine else None
    promotions = [m.as_row() for v in mine for m in audit_moves(v)]
    row = {
        "run_id": run_id,
        "model_name": version.name if version else tags.get("model_name") or "unregistered",
        "model_version": str(version.version) if version else None,
        "dataset_version": tags.get("dataset_version"),
        "test_accuracy": _float(metrics.get("test_accuracy")),
        "val_accuracy": _float(metrics.get("final_val_accuracy")),
        # "champion": the tag of versions gated before the gate scored both models itself
        "promoted": (version.tags or {}).get("gate") in ("promoted", "champion")
        if version
        else None,
        "run_date": run_date or started.date().isoformat(),
        "experiment_id": run.info.experiment_id,
        "model_type": params.get("model"),
        "epochs_run": _int(metrics.get("epochs_run")),
        "n_train": _int(params.get("n_train")),
        "n_val": _int(params.get("n_val")),
        "n_test": _int(params.get("n_test")),
        "test_macro_f1": _float(metrics.get("test_macro_f1")),
        "git_commit": tags.get("git_commit"),
        "started_at": started,
        "labels": json.dumps(labels),
        "train_accuracy": _last(history["train_accuracy"]),
        "train_loss": _last(history["train_loss"]),
        "val_loss": _last(history["val_loss"]),
        "test_loss": _float(metrics.get("test_loss")),  # None for runs logged before it
        "duration_s": _duration(metrics),
        "key_params": key_params(params),
    }
    classes = []
    for label, values in per_class.items():
        classes.append(
            {
                "run_id": run_id,
                "label": label,
                "eval_split": EVAL_SPLIT,
                **{k: values.get(k) for k in ("precision", "recall", "specificity", "f1")},
                "support": _int(values.get("support")),
            }
        )
    cells = [{"run_id": run_id, **c} for c in parse_confusion_csv(confusion_text, labels)]
    return RunReport(
        run_id=run_id,
        labels=labels,
        training_run=row,
        epochs=[by_epoch[k] for k in sorted(by_epoch)],
        classes=classes,
        confusion=cells,
        promotions=promotions,
    )


def load_run_report(engine: Engine, report: RunReport, batch_size: int = BATCH_SIZE) -> dict:
    """Check every row of `report`, then write them all in one transaction."""
    batches = [
        (training_run, check_rows(training_run, [report.training_run])),
        (epoch_metric, check_rows(epoch_metric, report.epochs, allow_empty=True)),
        (class_metric, check_rows(class_metric, report.classes, report.labels)),
        (
            confusion_cell,
            check_rows(
                confusion_cell,
                report.confusion,
                report.labels,
                label_columns=("true_label", "pred_label"),
            ),
        ),
        (model_promotion, check_rows(model_promotion, report.promotions, allow_empty=True)),
    ]
    return write_tables(engine, batches, batch_size)


def load_run(
    engine: Engine, tracking_uri: str, run_id: str, run_date: str | None = None
) -> dict[str, int]:
    """Copy MLflow run `run_id` into the warehouse; returns rows written per table.

    `run_date` is the pipeline's logical date. When None, a run already in the warehouse
    keeps the date it was loaded with, and a new one gets its start date (UTC)."""
    if run_date is None:
        run_date = _stored_run_date(engine, run_id)
    return load_run_report(engine, read_run(tracking_uri, run_id, run_date))


def _stored_run_date(engine: Engine, run_id: str) -> str | None:
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as conn:
            return conn.execute(
                select(training_run.c.run_date).where(training_run.c.run_id == run_id)
            ).scalar()
    except SQLAlchemyError:
        return None  # no table yet: write_tables will say so clearly
