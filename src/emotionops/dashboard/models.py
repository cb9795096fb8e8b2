"""The Models page's data: every training run with its reports, and the champion's history.

Read straight from the warehouse tables that `warehouse load-run` fills (training_run,
epoch_metric, class_metric, confusion_cell, model_promotion), so the page is the same on
SQLite, PostgreSQL and Oracle; `models_queries` are plain SQLAlchemy Core selects that tests
compile with the Oracle dialect.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, Select, select

from emotionops.dashboard.common import iso, read_all
from emotionops.warehouse.schema import (
    class_metric,
    confusion_cell,
    epoch_metric,
    model_promotion,
    training_run,
)

CHAMPION = "champion"
#: Decisions that move the champion alias onto a version (the others leave it where it is).
MOVES_CHAMPION = ("promoted", "rollback")
#: Oracle refuses more than 1000 items in one IN list.
ORACLE_IN_LIMIT = 1000


def models_queries(run_ids: Sequence[str] = (), max_runs: int = 200) -> dict[str, Select[Any]]:
    """The page's selects; the per-run ones are restricted to `run_ids`."""
    if len(run_ids) > ORACLE_IN_LIMIT:
        raise ValueError(f"at most {ORACLE_IN_LIMIT} runs per page, got {len(run_ids)}")
    runs = (
        select(training_run)
        .order_by(
            training_run.c.started_at.desc().nulls_last(),
            training_run.c.run_date.desc().nulls_last(),
            training_run.c.run_id,
        )
        .limit(max_runs)
    )
    ids = list(run_ids)
    return {
        "runs": runs,
        "epochs": select(epoch_metric)
        .where(epoch_metric.c.run_id.in_(ids))
        .order_by(epoch_metric.c.run_id, epoch_metric.c.epoch),
        "classes": select(class_metric)
        .where(class_metric.c.run_id.in_(ids), class_metric.c.eval_split == "test")
        .order_by(class_metric.c.run_id, class_metric.c.label),
        "confusion": select(confusion_cell)
        .where(confusion_cell.c.run_id.in_(ids), confusion_cell.c.eval_split == "test")
        .order_by(confusion_cell.c.run_id),
        "promotions": select(model_promotion).order_by(
            model_promotion.c.decided_at.desc(), model_promotion.c.model_version.desc()
        ),
    }


def _labels(row: dict[str, Any], classes: list[dict[str, Any]]) -> list[str]:
    """The run's label order: as logged (migration 5), else the labels its metrics name."""
    try:
        labels = json.loads(row.get("labels") or "null")
    except ValueError:
        labels = None
    if isinstance(labels, list) and labels:
        return [str(x) for x in labels]
    return [c["label"] for c in classes]


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _confusion(cells: list[dict[str, Any]], labels: list[str]) -> list[list[int]]:
    """Cells -> a matrix, rows = true label, columns = predicted, in `labels` order."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for c in cells:
        i, j = index.get(c["true_label"]), index.get(c["pred_label"])
        if i is not None and j is not None:
            matrix[i][j] = int(c["n_images"] or 0)
    return matrix


def champion_now(promotions: list[dict[str, Any]]) -> dict[str, str] | None:
    """Per model, the version the champion alias moved to last ({model name: version})."""
    current: dict[str, str] = {}
    for p in promotions:  # newest first
        if p["alias"] == CHAMPION and p["decision"] in MOVES_CHAMPION:
            current.setdefault(p["model_name"], str(p["model_version"]))
    return current or None


def models_data(engine: Engine, max_runs: int = 200) -> dict[str, Any]:
    """Everything the Models page draws, as JSON-ready values."""
    runs = read_all(engine, {"runs": models_queries(max_runs=max_runs)["runs"]})["runs"]
    ids = [r["run_id"] for r in runs]
    queries = models_queries(ids, max_runs)
    rows = read_all(engine, {k: v for k, v in queries.items() if k != "runs"})
    by_run: dict[str, dict[str, list[dict[str, Any]]]] = {
        run_id: {"epochs": [], "classes": [], "confusion": []} for run_id in ids
    }
    for part in ("epochs", "classes", "confusion"):
        for r in rows[part]:
            by_run[r["run_id"]][part].append(r)
    champions = champion_now(rows["promotions"]) or {}
    out_runs = []
    for row in runs:
        parts = by_run[row["run_id"]]
        labels = _labels(row, parts["classes"])
        version = row["model_version"]
        out_runs.append(
            {
                "run_id": row["run_id"],
                "model_name": row["model_name"],
                "model_version": version,
                "champion": version is not None
                and champions.get(row["model_name"]) == str(version),
                "dataset_version": row["dataset_version"],
                "run_date": row["run_date"],
                "started_at": iso(row["started_at"]),
                "model_type": row["model_type"],
                "labels": labels,
                "key_params": _json_object(row["key_params"]),
                "epochs_run": row["epochs_run"],
                "duration_s": row["duration_s"],
                "n_train": row["n_train"],
                "n_test": row["n_test"],
                "train_accuracy": row["train_accuracy"],
                "train_loss": row["train_loss"],
                "val_accuracy": row["val_accuracy"],
                "val_loss": row["val_loss"],
                "test_accuracy": row["test_accuracy"],
                "test_loss": row["test_loss"],
                "test_macro_f1": row["test_macro_f1"],
                "git_commit": row["git_commit"],
                "classes": [
                    {k: c[k] for k in ("label", "recall", "specificity", "f1", "support")}
                    for c in sorted(
                        parts["classes"],
                        key=lambda c: labels.index(c["label"]) if c["label"] in labels else 99,
                    )
                ],
                "confusion": _confusion(parts["confusion"], labels),
                "curves": {
                    name: [e[name] for e in parts["epochs"]]
                    for name in ("train_accuracy", "val_accuracy", "train_loss", "val_loss")
                },
            }
        )
    return {
        "runs": out_runs,
        "champions": champions,
        "promotions": [
            {
                **{k: p[k] for k in p if k != "decided_at"},
                "decided_at": iso(p["decided_at"]),
            }
            for p in rows["promotions"]
        ],
        "truncated": len(runs) == max_runs,
        "max_runs": max_runs,
    }
