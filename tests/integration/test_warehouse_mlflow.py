"""`load-run`: a finished MLflow run and its registry alias moves -> the reporting tables,
against the real MLflow server fixture, on SQLite and on a real PostgreSQL.

The runs are logged here with the layout `training.train.train` uses (its metric and param
names, step = epoch, the two machine-readable evaluation files the warehouse reads:
evaluation/per_class_metrics.json and evaluation/confusion_matrix.csv, and a real logged
model), which takes about a second instead of a TensorFlow fit; the DAG and demo tests
cover the same path behind a real training run.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from sqlalchemy import func, select

from emotionops.params import TrainParams
from emotionops.registry import AliasMove, move_alias, register
from emotionops.training.train import TrainResult, flat_params
from emotionops.warehouse import WarehouseError, connect, init_schema, load_run, table_counts
from emotionops.warehouse.migrations import LATEST
from emotionops.warehouse.report import build_report, render_report
from emotionops.warehouse.schema import (
    class_metric,
    confusion_cell,
    epoch_metric,
    model_promotion,
    training_run,
)

pytestmark = pytest.mark.integration

LABELS = ["happy", "sad", "surprise"]
EPOCHS = 3


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database(
            f"wh_{uuid.uuid4().hex[:10]}"
        )
    eng = connect(url)
    init_schema(eng)
    yield eng
    eng.dispose()


def per_class_metrics(cm: np.ndarray) -> dict[str, dict[str, float]]:
    """Precision, recall, specificity, F1, support per label, as train() logs them."""
    out, total = {}, cm.sum()
    for i, label in enumerate(LABELS):
        tp, fp, fn = cm[i, i], cm[:, i].sum() - cm[i, i], cm[i, :].sum() - cm[i, i]
        p, r = tp / (tp + fp), tp / (tp + fn)
        out[label] = {"precision": float(p), "recall": float(r),
                      "specificity": float((total - tp - fp - fn) / (total - tp - fn)),
                      "f1": float(2 * p * r / (p + r)), "support": float(cm[i, :].sum())}  # fmt: skip
    return out


def write_evaluation(out: Path, cm: np.ndarray, per_class: dict) -> None:
    """The evaluation/ files `warehouse load-run` reads (train() writes more beside them)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "per_class_metrics.json").write_text(json.dumps(per_class, indent=2))
    with (out / "confusion_matrix.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["true\\predicted", *LABELS])
        writer.writerows([label, *row] for label, row in zip(LABELS, cm.tolist(), strict=True))


class Identity:  # a real pyfunc model: registration needs a logged model
    @staticmethod
    def model():
        import mlflow

        class _Identity(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input: list[float]) -> list[float]:
                return model_input

        return _Identity()


#: The recipe the runs log (train() logs flat_params of the train section, as here).
RECIPE = TrainParams(model="small_cnn", image_size=48, batch_size=64, epochs=EPOCHS,
                     precision="float32", partners=["fer"])  # fmt: skip


def log_training_run(
    tracking_uri: str,
    cm: list[list[int]],
    artifacts: bool = True,
    finish: bool = True,
    distill_seconds: float | None = None,
) -> TrainResult:
    """An MLflow run with train()'s layout; returns the TrainResult train() would."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("it-warehouse")
    matrix = np.array(cm)
    per_class = per_class_metrics(matrix)
    accuracy = float(np.trace(matrix) / matrix.sum())
    run = mlflow.start_run()
    run_id = run.info.run_id
    mlflow.log_params({**flat_params(RECIPE), "labels": json.dumps(LABELS), "n_train": 45,
                       "n_val": 9, "n_test": int(matrix.sum())})  # fmt: skip
    mlflow.set_tags({"dataset_version": "dv-it", "model_name": "it-model", "git_commit": "a" * 40})
    for epoch in range(EPOCHS):
        mlflow.log_metrics(
            {"train_accuracy": 0.5 + 0.1 * epoch, "train_loss": 1.0 - 0.2 * epoch,
             "val_accuracy": 0.4 + 0.1 * epoch, "val_loss": 1.1 - 0.2 * epoch},
            step=epoch,
        )  # fmt: skip
    metrics = {"test_accuracy": accuracy, "test_macro_f1": 0.5, "epochs_run": float(EPOCHS),
               "final_val_accuracy": 0.6, "test_loss": 1.0 - accuracy,
               "train_seconds": 30.0}  # fmt: skip
    if distill_seconds is not None:
        metrics["distill_seconds"] = distill_seconds
    mlflow.log_metrics(metrics)
    if artifacts:
        with tempfile.TemporaryDirectory() as tmp:
            write_evaluation(Path(tmp), matrix, per_class)
            mlflow.log_artifacts(tmp, "evaluation")
    info = mlflow.pyfunc.log_model(name="model", python_model=Identity.model(), pip_requirements=[])
    if finish:
        mlflow.end_run()
    return TrainResult(
        run_id=run_id, model_uri=info.model_uri, test_accuracy=accuracy, val_accuracy=0.6,
        n_train=45, n_val=9, n_test=int(matrix.sum()), epochs_run=EPOCHS, per_class=per_class,
        tflite_parity=0.0, dataset_version="dv-it", confusion=cm,
    )  # fmt: skip


@pytest.fixture(scope="module")
def two_runs(mlflow_server: str):
    """A champion, then a worse run refused (it becomes challenger)."""
    name = f"it-model-{uuid.uuid4().hex[:6]}"
    good = log_training_run(mlflow_server, [[4, 0, 0], [0, 3, 1], [0, 0, 4]], distill_seconds=5.0)
    worse = log_training_run(mlflow_server, [[2, 1, 1], [1, 2, 1], [0, 1, 3]])
    seen: list[AliasMove] = []
    client = MlflowClient(mlflow_server, mlflow_server)
    # The registry's own moves, as promote() leaves them (these runs hold no gateable model).
    v1 = register(mlflow_server, name, good.run_id, on_move=seen.append)
    move_alias(client, v1, "champion", "promoted", "no champion yet", None, seen.append,
               ("test_accuracy", good.test_accuracy, None))  # fmt: skip
    client.set_model_version_tag(name, "1", "gate", "promoted")
    v2 = register(mlflow_server, name, worse.run_id, on_move=seen.append)
    move_alias(client, v2, "champion", "refused",
               f"test_accuracy {worse.test_accuracy:.4f} < champion v1 {good.test_accuracy:.4f}",
               v1, seen.append, ("test_accuracy", worse.test_accuracy, good.test_accuracy),
               move=False)  # fmt: skip
    client.set_model_version_tag(name, "2", "gate", "refused")
    assert [m.decision for m in seen] == ["registered", "promoted", "registered", "refused"]
    return name, good, worse


def _rows(engine, table, run_id):
    with engine.connect() as conn:
        return conn.execute(select(table).where(table.c.run_id == run_id)).all()


def test_load_run_copies_metrics_and_audit_trail_idempotently(
    engine, two_runs, mlflow_server: str
) -> None:
    name, good, worse = two_runs
    first = load_run(engine, mlflow_server, good.run_id, run_date="2026-11-20")
    assert first == {"training_run": 1, "epoch_metric": EPOCHS, "class_metric": 3,
                     "confusion_cell": 9, "model_promotion": 2}  # fmt: skip
    load_run(engine, mlflow_server, worse.run_id)
    counts = table_counts(engine)
    for _ in range(2):  # every load twice: nothing duplicated
        load_run(engine, mlflow_server, good.run_id)
        load_run(engine, mlflow_server, worse.run_id)
        assert table_counts(engine) == counts
    assert (counts["training_run"], counts["epoch_metric"], counts["confusion_cell"]) == (
        2, 2 * EPOCHS, 18,
    )  # fmt: skip

    (run,) = _rows(engine, training_run, good.run_id)
    assert (run.model_name, run.model_version, run.promoted) == (name, "1", True)
    assert run.run_date == "2026-11-20"  # kept on reloads without --run-date
    assert run.test_accuracy == pytest.approx(good.test_accuracy)
    assert (run.n_train, run.n_test, run.epochs_run, run.model_type) == (45, 12, 3, "small_cnn")
    assert run.dataset_version == "dv-it" and run.git_commit == "a" * 40
    assert run.started_at.tzinfo is not None
    # The dashboard's columns: labels in output order, the curves' last epoch, the deployed
    # model's test loss, fit + distillation time, the recipe at a glance.
    assert json.loads(run.labels) == LABELS
    assert (run.train_accuracy, run.train_loss, run.val_loss) == pytest.approx((0.7, 0.6, 0.7))
    assert run.test_loss == pytest.approx(1.0 - good.test_accuracy)
    assert run.duration_s == pytest.approx(35.0)
    recipe = json.loads(run.key_params)
    assert {k: recipe[k] for k in ("model", "image_size", "batch_size", "epochs", "precision",
                                   "partners", "learning_rate", "flip_average")} == {
        "model": "small_cnn", "image_size": 48, "batch_size": 64, "epochs": EPOCHS,
        "precision": "float32", "partners": ["fer"], "learning_rate": RECIPE.learning_rate,
        "flip_average": True,
    }  # fmt: skip
    assert {k: recipe[f"augment.{k}"] for k in RECIPE.augment.model_dump()} == (
        RECIPE.augment.model_dump()
    )
    (other,) = _rows(engine, training_run, worse.run_id)
    assert (other.model_version, other.promoted) == ("2", False)
    assert other.duration_s == pytest.approx(30.0)  # no distillation: fit time alone

    epochs = sorted(_rows(engine, epoch_metric, good.run_id), key=lambda r: r.epoch)
    assert [r.epoch for r in epochs] == [0, 1, 2]
    assert [round(r.train_loss, 3) for r in epochs] == [1.0, 0.8, 0.6]
    assert epochs[2].val_accuracy == pytest.approx(0.6)

    classes = {r.label: r for r in _rows(engine, class_metric, good.run_id)}
    assert classes["sad"].recall == pytest.approx(0.75) and classes["sad"].support == 4
    assert classes["surprise"].precision == pytest.approx(0.8)
    cells = {
        (r.true_label, r.pred_label): r.n_images for r in _rows(engine, confusion_cell, good.run_id)
    }
    assert cells[("sad", "surprise")] == 1 and sum(cells.values()) == 12

    with engine.connect() as conn:
        moves = conn.execute(
            select(model_promotion).where(model_promotion.c.model_name == name)
            .order_by(model_promotion.c.model_version, model_promotion.c.alias)
        ).all()  # fmt: skip
    assert [(m.model_version, m.alias, m.decision, m.previous_version) for m in moves] == [
        ("1", "challenger", "registered", None), ("1", "champion", "promoted", None),
        ("2", "challenger", "registered", "1"), ("2", "champion", "refused", "1"),
    ]  # fmt: skip
    assert moves[3].old_value == pytest.approx(good.test_accuracy)
    assert moves[3].new_value == pytest.approx(worse.test_accuracy)
    assert moves[3].reason.startswith("test_accuracy 0.5833 < champion v1")
    assert moves[3].run_id == worse.run_id

    text = render_report(build_report(engine))
    assert f"{name} v1  test accuracy 0.917 champion" in text
    assert f"{name} v2 -> @champion (was v1)  refused: test_accuracy" in text


def test_load_run_refuses_what_it_cannot_read_and_writes_nothing(
    engine, mlflow_server: str
) -> None:
    with pytest.raises(WarehouseError, match="no MLflow run 'no-such-run'"):
        load_run(engine, mlflow_server, "no-such-run")
    bare = log_training_run(mlflow_server, [[1, 0, 0], [0, 1, 0], [0, 0, 1]], artifacts=False)
    with pytest.raises(WarehouseError, match=r"per_class_metrics\.json, confusion_matrix\.csv"):
        load_run(engine, mlflow_server, bare.run_id)
    import mlflow

    running = log_training_run(mlflow_server, [[1, 0, 0], [0, 1, 0], [0, 0, 1]], finish=False)
    try:
        with pytest.raises(WarehouseError, match="is RUNNING: only finished runs"):
            load_run(engine, mlflow_server, running.run_id)
    finally:
        mlflow.end_run()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(training_run)).scalar() == 0


def test_cli_load_run_and_report(two_runs, mlflow_server: str, tmp_path: Path) -> None:
    _, good, _ = two_runs
    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "params.yaml").write_text((repo / "params.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTIONOPS_")}
    env.update(EMOTIONOPS_PROJECT_DIR=str(tmp_path), EMOTIONOPS_MLFLOW_TRACKING_URI=mlflow_server,
               COLUMNS="200")  # fmt: skip
    cli = str(Path(sys.executable).with_name("emotionops"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, "warehouse", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=180)  # fmt: skip

    init = run("init")
    assert init.returncode == 0, init.stderr
    applied = ", ".join(str(v) for v in range(1, LATEST + 1))
    assert f"schema version {LATEST} (migrations applied: {applied})" in init.stderr
    loaded = run("load-run", good.run_id, "--run-date", "2026-11-20")
    assert loaded.returncode == 0, loaded.stderr
    assert (  # two promotion rows: its registration (challenger) and its promotion
        "training_run 1, epoch_metric 3, class_metric 3, confusion_cell 9, model_promotion 2"
        in (" ".join(loaded.stderr.split()))
    )
    report = run("report")
    assert report.returncode == 0, report.stderr
    assert "2026-11-20" in report.stdout and "champion" in report.stdout
    bad = run("load-run", good.run_id, "--run-date", "20-11-2026")
    assert bad.returncode == 2 and "--run-date must be YYYY-MM-DD" in bad.stderr
