"""The promotion gate against a real MLflow server: better promoted, worse refused, a broken
or disagreeing TFLite file and another label set block promotion, two promotions at once
end with the better model, rollback, status, and a server that is down.

The models are built by hand so their quality is known exactly: on the bar faces (the class
is the row of a bright bar) a Dense layer whose weights are the band masks is a perfect
classifier, and pointing one label's weights at another band makes that label's recall 0.
They are logged with train()'s layout (labels param, data/split.csv, tflite/, the Keras
model), which is all the gate reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from _factories import write_bar_faces
from emotionops.params import RegistryParams

pytestmark = pytest.mark.integration

LABELS = ["happy", "sad", "surprise"]
SIZE = 48
REPO = Path(__file__).resolve().parents[2]


def band_model(labels: list[str], wrong: dict[int, int] | None = None):
    """Scores each label by the brightness of its band: perfect on the bar faces, except that
    label i looks at band j for every i -> j in `wrong`: then faces of label j tie between i
    and j (the lower index wins), and faces of label i see no bright band at all."""
    import keras

    band = SIZE // len(LABELS)
    weights = np.zeros((SIZE * SIZE, len(labels)), np.float32)
    for k in range(len(labels)):
        row = (wrong or {}).get(k, k)
        mask = np.zeros((SIZE, SIZE), np.float32)
        mask[row * band + band // 4 : row * band + 3 * band // 4, :] = 1.0 / (band * SIZE)
        weights[:, k] = mask.ravel()
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 1)), keras.layers.Flatten(),
        keras.layers.Dense(len(labels), activation="softmax"),
    ])  # fmt: skip
    model.layers[-1].set_weights([weights * 0.2, np.zeros(len(labels), np.float32)])
    return model


def log_run(
    tracking_uri: str,
    model,
    labels: list[str],
    split_csv: Path,
    tflite_from=None,
    tflite: bool = True,
    fingerprint: str = "fp-gate",
) -> str:
    """An MLflow run with train()'s layout; `tflite_from` exports another model's TFLite file
    (a TFLite artifact that disagrees with the run's Keras model), `tflite=False` none."""
    import mlflow

    from emotionops.training.export import export_tflite

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("it-gate")
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({"labels": json.dumps(labels), "image_size": SIZE})
        mlflow.set_tags(
            {"dataset_version": f"dv-{fingerprint}", "test_set_fingerprint": fingerprint}
        )
        mlflow.log_artifact(str(split_csv), "data")
        if tflite:
            export_tflite(tflite_from or model, Path(tmp) / "tflite", labels, SIZE)
            mlflow.log_artifacts(str(Path(tmp) / "tflite"), "tflite")
        mlflow.tensorflow.log_model(model, name="model", pip_requirements=[])
    return run.info.run_id


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gate-faces")
    write_bar_faces(root, {"train": 6, "test": 30}, LABELS)
    return root


@pytest.fixture(scope="module")
def runs(mlflow_server: str, faces: Path) -> dict[str, str]:
    split = faces / "split.csv"
    perfect = band_model(LABELS)
    return {
        "perfect": log_run(mlflow_server, perfect, LABELS, split),
        "one_wrong": log_run(mlflow_server, band_model(LABELS, {0: 1}), LABELS, split),
        "two_wrong": log_run(mlflow_server, band_model(LABELS, {0: 1, 1: 2}), LABELS, split),
        "other_labels": log_run(mlflow_server, band_model(LABELS[:2]), LABELS[:2], split),
        "disagreeing_tflite": log_run(
            mlflow_server, perfect, LABELS, split, tflite_from=band_model(LABELS, {0: 1, 1: 2})
        ),
        "missing_tflite": log_run(mlflow_server, perfect, LABELS, split, tflite=False),
        "other_split": log_run(
            mlflow_server, band_model(LABELS, {0: 1}), LABELS, split, fingerprint="fp-older"
        ),
    }


@pytest.fixture()
def engine(tmp_path: Path):
    from emotionops.warehouse import connect, init_schema

    eng = connect(f"sqlite:///{tmp_path / 'warehouse.db'}")
    init_schema(eng)
    return eng


def _promote(tracking_uri, name, faces, engine, version=None, **params):
    from emotionops.registry import promote

    return promote(tracking_uri, name, faces, RegistryParams(**params), engine, version)


def test_better_is_promoted_worse_refused_and_every_decision_is_recorded(
    mlflow_server: str, runs: dict[str, str], faces: Path, engine
) -> None:
    from mlflow import MlflowClient

    from emotionops.registry import get_alias_version, register
    from emotionops.warehouse import load_promotions, table_counts

    name = f"gate-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(mlflow_server, mlflow_server)
    v1 = register(mlflow_server, name, runs["one_wrong"])
    assert get_alias_version(mlflow_server, name, "challenger").version == v1.version == "1"
    assert json.loads(client.get_model_version(name, "1").tags["labels"]) == LABELS

    first = _promote(mlflow_server, name, faces, engine)  # no champion: the floor applies
    assert first.promoted and first.previous_version is None
    assert [c.name for c in first.decision.checks] == [
        "tflite agreement",
        "tflite latency",
        "floor",
    ]
    load_promotions(engine, first.moves)

    register(mlflow_server, name, runs["two_wrong"])
    worse = _promote(mlflow_server, name, faces, engine)
    assert not worse.promoted and worse.previous_version == 1
    assert "macro-F1: " in worse.reason and "vs champion v1" in worse.reason
    assert get_alias_version(mlflow_server, name, "champion").version == "1"
    tags = client.get_model_version(name, "2").tags
    assert tags["gate"] == "refused" and "macro-F1" in tags["gate_reason"]
    figures = json.loads(tags["gate_figures"])  # both models' figures, measured here
    assert figures["champion_macro_f1"] > figures["challenger_macro_f1"]
    # sad's column reads surprise's band: every surprise face is called sad (a tie, first wins)
    assert figures["champion_recall_surprise"] == 1.0
    assert figures["challenger_recall_surprise"] == 0.0
    load_promotions(engine, worse.moves)

    register(mlflow_server, name, runs["perfect"])
    better = _promote(mlflow_server, name, faces, engine)
    assert better.promoted and better.previous_version == 1
    assert get_alias_version(mlflow_server, name, "champion").version == "3"
    assert better.decision.challenger.macro_f1 == pytest.approx(1.0)
    assert better.decision.challenger.tflite_agreement == 1.0
    load_promotions(engine, better.moves)
    assert table_counts(engine)["model_promotion"] == 3  # promoted, refused, promoted

    register(mlflow_server, name, runs["perfect"])  # the same model again: no improvement
    same = _promote(mlflow_server, name, faces, engine)
    assert not same.promoted and "+0.0000, needs +0.005" in same.reason


@pytest.mark.parametrize(
    ("run", "needle"),
    [
        ("disagreeing_tflite", "tflite agreement: 0."),
        ("other_labels", "label set: challenger ['happy', 'sad'] vs champion"),
        ("corrupt_tflite", "tflite: TFLite artifact unusable on the edge"),
        ("missing_tflite", "tflite: TFLite artifact unusable on the edge"),
    ],
)
def test_a_model_that_would_not_serve_the_cameras_is_refused(
    mlflow_server: str, runs: dict[str, str], faces: Path, engine, run: str, needle: str
) -> None:
    from mlflow import MlflowClient

    from emotionops.registry import get_alias_version, register

    name = f"gate-{uuid.uuid4().hex[:8]}"
    register(mlflow_server, name, runs["one_wrong"])
    assert _promote(mlflow_server, name, faces, engine).promoted
    run_id = runs["perfect"] if run == "corrupt_tflite" else runs[run]
    if run == "corrupt_tflite":  # a fresh copy of the perfect run whose TFLite file is junk
        run_id = log_run(mlflow_server, band_model(LABELS), LABELS, faces / "split.csv")
        with tempfile.TemporaryDirectory() as tmp:
            junk = Path(tmp) / "model.tflite"
            junk.write_bytes(b"not a flatbuffer")
            MlflowClient(mlflow_server).log_artifact(run_id, str(junk), "tflite")
    register(mlflow_server, name, run_id)
    refused = _promote(mlflow_server, name, faces, engine, min_improvement=-1, max_recall_drop=1)
    assert not refused.promoted and needle in refused.reason, refused.reason
    assert get_alias_version(mlflow_server, name, "champion").version == "1"


def test_a_champion_tested_on_another_split_is_scored_on_the_challengers(
    mlflow_server: str, runs: dict[str, str], faces: Path, engine
) -> None:
    from emotionops.registry import register

    name = f"gate-{uuid.uuid4().hex[:8]}"
    register(mlflow_server, name, runs["other_split"])
    assert _promote(mlflow_server, name, faces, engine).promoted
    register(mlflow_server, name, runs["perfect"])
    decision = _promote(mlflow_server, name, faces, engine)
    assert decision.promoted
    assert (
        "champion v1 was tested on another split (dataset dv-fp-older): both scored on "
        "the challenger's (dataset dv-fp-gate)" in decision.reason
    )
    assert decision.decision.champion.evaluation is not None  # really scored, on these faces


def test_rollback_restores_the_previous_champion_and_status_shows_the_history(
    mlflow_server: str, runs: dict[str, str], faces: Path, engine
) -> None:
    from emotionops.registry import RegistryError, get_alias_version, register, rollback, status

    name = f"gate-{uuid.uuid4().hex[:8]}"
    register(mlflow_server, name, runs["one_wrong"])
    _promote(mlflow_server, name, faces, engine)
    with pytest.raises(RegistryError, match="v1 replaced no earlier champion"):
        rollback(mlflow_server, name)
    register(mlflow_server, name, runs["perfect"])
    assert _promote(mlflow_server, name, faces, engine).promoted
    move = rollback(mlflow_server, name)
    assert (move.decision, move.model_version, move.previous_version) == ("rollback", 1, 2)
    assert get_alias_version(mlflow_server, name, "champion").version == "1"
    report = status(mlflow_server, name)
    assert [(v["version"], v["aliases"]) for v in report.versions] == [
        (1, ["champion"]), (2, []),
    ]  # fmt: skip
    assert [(m.model_version, m.decision) for m in report.history] == [
        (1, "registered"), (1, "promoted"), (2, "registered"), (2, "promoted"), (1, "rollback"),
    ]  # fmt: skip


def test_two_promotions_at_once_end_with_the_better_model(
    mlflow_server: str, runs: dict[str, str], faces: Path, tmp_path: Path
) -> None:
    """Champion: two labels wrong. Challengers: one label wrong (v2), perfect (v3). Both beat
    the champion; started together, the lease makes the second compare against the first's
    result, so whatever the order, the perfect model serves and both decisions are audited."""
    from emotionops.registry import get_alias_version, register
    from emotionops.warehouse import connect, init_schema, table_counts

    name = f"gate-{uuid.uuid4().hex[:8]}"
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "faces").symlink_to(faces)
    (project / "params.yaml").write_text((REPO / "params.yaml").read_text())
    warehouse = f"sqlite:///{project / 'data' / 'warehouse.db'}"
    engine = connect(warehouse)
    init_schema(engine)
    register(mlflow_server, name, runs["two_wrong"])
    assert _promote(mlflow_server, name, faces, engine, floor_macro_f1=0).promoted
    register(mlflow_server, name, runs["one_wrong"])
    register(mlflow_server, name, runs["perfect"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTIONOPS_")}
    env.update({
        "EMOTIONOPS_PROJECT_DIR": str(project), "EMOTIONOPS_WAREHOUSE_URL": warehouse,
        "EMOTIONOPS_MLFLOW_TRACKING_URI": mlflow_server, "EMOTIONOPS_MODEL_NAME": name,
        "COLUMNS": "200",
    })  # fmt: skip
    cli = str(Path(sys.executable).with_name("emotionops"))
    procs = [
        subprocess.Popen([cli, "registry", "promote", "--version", v], env=env, cwd=project,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for v in ("2", "3")
    ]  # fmt: skip
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    assert get_alias_version(mlflow_server, name, "champion").version == "3"
    assert sum("PROMOTED" in err or "REFUSED" in err for _, err in outputs) == 2
    assert table_counts(engine)["model_promotion"] == 2  # one row per decision


def test_decide_refuses_a_macro_f1_gain_that_costs_one_label_its_recall() -> None:
    """The pure core: +0.05 macro-F1 but `sad` recall down 0.2 (tolerance 0.05): refused."""
    from emotionops.gate import ModelScores, decide
    from emotionops.training.evaluate import score

    truth = np.repeat([0, 1, 2], 10)
    old_pred = truth.copy()
    old_pred[:4] = 1  # happy recall 0.6
    new_pred = truth.copy()
    new_pred[10:12] = 2  # sad recall 0.8, happy perfect: macro-F1 up
    scores = [
        ModelScores(v, f"r{v}", LABELS, SIZE, score(truth, pred, LABELS), 1.0, 1.0)
        for v, pred in ((1, old_pred), (2, new_pred))
    ]
    decision = decide(scores[1], scores[0], RegistryParams(max_recall_drop=0.05))
    assert decision.challenger.macro_f1 > decision.champion.macro_f1
    assert not decision.promote
    assert "recall per label: largest drop sad +0.2000 (at most 0.05)" in decision.reason
    assert decide(scores[1], scores[0], RegistryParams(max_recall_drop=0.25)).promote


@pytest.mark.parametrize(
    ("field", "value"),
    [("min_tflite_agreement", 1.5), ("max_latency_ms", 0), ("floor_macro_f1", -1)],
)
def test_registry_params_out_of_range_are_refused(field: str, value: float) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=field):
        RegistryParams(**{field: value})


def test_registry_down_or_unknown_names_fail_clearly_and_change_nothing(
    mlflow_server: str, runs: dict[str, str], faces: Path, engine
) -> None:
    from emotionops.registry import RegistryError, register, rollback, status
    from emotionops.warehouse import table_counts

    dead = "http://127.0.0.1:9"
    before = table_counts(engine)
    started = time.monotonic()
    for call in (lambda: register(dead, "m", runs["perfect"]), lambda: status(dead, "m"),
                 lambda: rollback(dead, "m"), lambda: _promote(dead, "m", faces, engine)):  # fmt: skip
        with pytest.raises(RegistryError, match="not reachable"):
            call()
    assert time.monotonic() - started < 30  # no minutes of MLflow client retries
    assert table_counts(engine) == before  # nothing written to the warehouse either
    with pytest.raises(RegistryError, match="no MLflow run 'nope'"):
        register(mlflow_server, "m", "nope")
    import mlflow

    mlflow.set_tracking_uri(mlflow_server)
    with mlflow.start_run() as bare:  # a run that logged no model
        mlflow.log_param("labels", json.dumps(LABELS))
    with pytest.raises(RegistryError, match=f"run {bare.info.run_id} logged no model"):
        register(mlflow_server, "m", bare.info.run_id)
    with pytest.raises(RegistryError, match="no registered model 'never-registered'"):
        status(mlflow_server, "never-registered")
    with pytest.raises(RegistryError, match="has no challenger"):
        _promote(mlflow_server, "never-registered", faces, engine)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    register(mlflow_server, name, runs["perfect"])
    with pytest.raises(RegistryError, match="has no version 7"):
        _promote(mlflow_server, name, faces, engine, version=7)


# Two rulers --------------------------------------------------------------------------------
#: FER+-style votes for the gate's test faces: the crowd calls the happy-band faces sad and
#: the sad-band faces happy, agrees on surprise, and has no majority on the first three faces.
CROWD = {
    "happy": {"sad": 8, "happy": 2},
    "sad": {"happy": 8, "sad": 2},
    "surprise": {"surprise": 10},
}
NO_MAJORITY = {"happy": 5, "sad": 5}


@pytest.fixture(scope="module")
def voted_runs(mlflow_server: str, faces: Path, tmp_path_factory: pytest.TempPathFactory):
    """The perfect model and one with happy and sad swapped (perfect by the crowd), both
    logged with a split file whose test rows carry votes."""
    import csv

    from emotionops.dataset.votes import encode_votes

    split = tmp_path_factory.mktemp("voted") / "split.csv"
    with (faces / "split.csv").open(newline="") as src, split.open("w", newline="") as dst:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=[*(reader.fieldnames or []), "votes"])
        writer.writeheader()
        n_test = 0
        for row in reader:
            votes = None
            if row["split"] == "test":
                votes = NO_MAJORITY if n_test < 3 else CROWD[row["label"]]
                n_test += 1
            writer.writerow({**row, "votes": encode_votes(votes)})
    swapped = band_model(LABELS, {0: 1, 1: 0})  # happy reads sad's band and vice versa
    return {
        "perfect": log_run(mlflow_server, band_model(LABELS), LABELS, split, fingerprint="fp-v"),
        "swapped": log_run(mlflow_server, swapped, LABELS, split, fingerprint="fp-v"),
    }


@pytest.mark.parametrize(("ruler", "promoted"), [("original", False), ("auto", True)])
def test_the_gate_decides_on_the_ruler_params_name(
    mlflow_server: str, voted_runs: dict[str, str], faces: Path, engine, ruler: str, promoted: bool
) -> None:
    """Champion: perfect by the folder labels. Challenger: perfect by the crowd's majority.
    On the original ruler it is refused, on auto (= ferplus: the split carries votes) it is
    promoted; the ruler is in the reason, the figures and the audit's metric name."""
    from sqlalchemy import text

    from emotionops.registry import get_alias_version, register
    from emotionops.warehouse import load_promotions

    name = f"gate-{uuid.uuid4().hex[:8]}"
    register(mlflow_server, name, voted_runs["perfect"])
    first = _promote(mlflow_server, name, faces, engine, floor_macro_f1=0, ruler="original")
    assert first.promoted and first.moves[0].metric_name == "original:macro_f1"
    register(mlflow_server, name, voted_runs["swapped"])
    second = _promote(mlflow_server, name, faces, engine, ruler=ruler)
    expected = "original" if ruler == "original" else "ferplus"
    assert second.promoted is promoted, second.reason
    decision = second.decision
    assert decision.ruler == expected and second.moves[0].metric_name == f"{expected}:macro_f1"
    assert f"on {expected} labels" in second.reason
    if expected == "ferplus":
        # 30 test faces, 3 without a majority: both models scored on the other 27
        assert decision.challenger.evaluation.n_images == 27
        assert decision.champion.evaluation.n_images == 27
        assert decision.challenger.macro_f1 == pytest.approx(1.0)
        assert decision.champion.evaluation.per_class["happy"]["recall"] == 0.0
        assert "FER+ majority labels of 27 test faces, 3 without a majority" in second.reason
    else:
        assert decision.challenger.evaluation.n_images == 30
        assert decision.champion.macro_f1 == pytest.approx(1.0)
        assert "the original labels of 30 test faces" in second.reason
    assert get_alias_version(mlflow_server, name, "champion").version == ("2" if promoted else "1")
    load_promotions(engine, second.moves)
    with engine.connect() as conn:
        names = (
            conn.execute(
                text("SELECT metric_name FROM model_promotion WHERE model_name = :n"), {"n": name}
            )
            .scalars()
            .all()
        )
    assert names == [f"{expected}:macro_f1"]


def test_the_ferplus_ruler_without_votes_is_an_error_and_auto_falls_back(
    mlflow_server: str, runs: dict[str, str], faces: Path, engine
) -> None:
    from emotionops.registry import RegistryError, get_alias_version, register

    name = f"gate-{uuid.uuid4().hex[:8]}"
    register(mlflow_server, name, runs["one_wrong"])
    with pytest.raises(RegistryError, match="the ferplus ruler needs votes"):
        _promote(mlflow_server, name, faces, engine, ruler="ferplus")
    assert get_alias_version(mlflow_server, name, "champion") is None
    fallback = _promote(mlflow_server, name, faces, engine)  # auto: no votes -> original
    assert fallback.promoted and fallback.decision.ruler == "original"
    assert fallback.moves[0].metric_name == "original:macro_f1"


def test_registry_ruler_is_checked() -> None:
    from pydantic import ValidationError

    assert RegistryParams().ruler == "auto"
    with pytest.raises(ValidationError, match="ruler"):
        RegistryParams(ruler="crowd")
