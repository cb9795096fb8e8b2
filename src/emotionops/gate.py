"""The promotion gate: a challenger becomes champion only when it beats the champion on the
same frozen test faces and will run on the cameras.

Both models are loaded from their MLflow runs and scored here, in one process, on the test
split of the challenger's dataset version (its run's `data/split.csv`, read against the
local faces folder), never from numbers logged at different times. The challenger must also
ship a TFLite file that loads in the edge runtime (ai-edge-litert), agrees with its Keras
model and answers within the latency budget. The metrics are measured on the ruler that
params registry.ruler names (`original` labels or the `ferplus` majority of annotator
votes; `auto`: ferplus when the test split carries votes), recorded in the decision. `decide` is the pure core; `describe_version`
and `score` load and measure; the registry (`emotionops.registry.promote`) moves the alias.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emotionops.errors import EmotionOpsError
from emotionops.params import RegistryParams

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from emotionops.training.evaluate import EvalSet, Evaluation

LATENCY_FACES = 64  # faces timed one by one through the TFLite interpreter (as the edge runs)
EPS = 1e-9  # float noise: a recall drop of exactly the tolerance passes


class GateError(EmotionOpsError):
    """A model version cannot be scored (no model, no test split, faces missing...)."""


@dataclass
class ModelScores:
    """One model version scored on the gate's test faces."""

    version: int
    run_id: str
    labels: list[str]
    image_size: int
    evaluation: Evaluation | None  # None when the label sets differ (nothing comparable)
    tflite_agreement: float | None = None  # top-1 agreement TFLite vs Keras on the test faces
    tflite_latency_ms: float | None = None  # median per-face invoke, this machine
    tflite_error: str = ""  # why the TFLite file did not load or run
    test_fingerprint: str = ""

    @property
    def macro_f1(self) -> float | None:
        return None if self.evaluation is None else self.evaluation.macro_f1

    def recall(self, label: str) -> float:
        assert self.evaluation is not None
        return self.evaluation.per_class[label]["recall"]


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class GateDecision:
    promote: bool
    checks: list[Check]
    challenger: ModelScores
    champion: ModelScores | None
    notes: list[str] = field(default_factory=list)
    ruler: str = "original"  # the labels the figures are measured on (evaluate.RULERS)

    @property
    def metric_name(self) -> str:
        """The decided metric with its ruler, e.g. `ferplus:macro_f1` (the audit record's)."""
        return f"{self.ruler}:macro_f1"

    @property
    def reason(self) -> str:
        failed = [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]
        head = (
            "; ".join(failed)
            if failed
            else "all checks passed: " + "; ".join(c.detail for c in self.checks)
        )
        return "; ".join([head, *self.notes])

    def figures(self) -> dict[str, Any]:
        """Both models' figures, for version tags and the audit row."""
        out: dict[str, Any] = {"ruler": self.ruler, "challenger_macro_f1": self.challenger.macro_f1}
        if self.champion is not None:
            out["champion_version"] = self.champion.version
            out["champion_macro_f1"] = self.champion.macro_f1
        for who, scores in (("challenger", self.challenger), ("champion", self.champion)):
            if scores is not None and scores.evaluation is not None:
                for label, m in scores.evaluation.per_class.items():
                    out[f"{who}_recall_{label}"] = round(m["recall"], 4)
        out["tflite_agreement"] = self.challenger.tflite_agreement
        out["tflite_latency_ms"] = self.challenger.tflite_latency_ms
        return out


def decide(
    challenger: ModelScores,
    champion: ModelScores | None,
    params: RegistryParams,
    ruler: str = "original",
) -> GateDecision:
    """Promote or refuse, with every check and its figures (the pure core of the gate);
    `ruler` names the labels the scores were measured on (it is written into the checks)."""
    checks: list[Check] = []
    if champion is not None:
        same = champion.labels == challenger.labels
        checks.append(Check("label set", same, f"challenger {challenger.labels}" + (
            "" if same else f" vs champion {champion.labels}")))  # fmt: skip
        size_ok = champion.image_size == challenger.image_size
        checks.append(Check("input spec", size_ok, f"[N, {challenger.image_size}, "
                            f"{challenger.image_size}, 1]" + ("" if size_ok else
                            f" vs champion's side {champion.image_size}")))  # fmt: skip
    if not all(c.passed for c in checks):  # nothing comparable: refuse on the mismatch
        return GateDecision(False, checks, challenger, champion, ruler=ruler)
    checks += _tflite_checks(challenger, params)
    new = challenger.macro_f1
    if new is None:
        checks.append(Check("scored", False, "the challenger could not be scored"))
    elif champion is None:
        checks.append(Check("floor", new >= params.floor_macro_f1,
                            f"macro-F1 {new:.4f} vs floor {params.floor_macro_f1:g} (no champion) "
                            f"on {ruler} labels"))  # fmt: skip
    elif champion.macro_f1 is not None:
        old = champion.macro_f1
        checks.append(Check("macro-F1", new - old >= params.min_improvement - EPS,
                            f"{new:.4f} vs champion v{champion.version} {old:.4f} "
                            f"({new - old:+.4f}, needs {params.min_improvement:+g}) on {ruler} labels"))  # fmt: skip
        drops = {lab: champion.recall(lab) - challenger.recall(lab) for lab in challenger.labels}
        worst = max(drops, key=drops.get)
        checks.append(Check("recall per label", drops[worst] <= params.max_recall_drop + EPS,
                            f"largest drop {worst} {drops[worst]:+.4f} "
                            f"(at most {params.max_recall_drop:g}) on {ruler} labels"))  # fmt: skip
    return GateDecision(all(c.passed for c in checks), checks, challenger, champion, ruler=ruler)


def _tflite_checks(scores: ModelScores, params: RegistryParams) -> list[Check]:
    if scores.tflite_error:
        return [Check("tflite", False, scores.tflite_error)]
    agreement, latency = scores.tflite_agreement or 0.0, scores.tflite_latency_ms or 0.0
    return [
        Check("tflite agreement", agreement >= params.min_tflite_agreement,
              f"{agreement:.4f} of test faces as Keras (at least {params.min_tflite_agreement:g})"),
        Check("tflite latency", latency <= params.max_latency_ms,
              f"{latency:.2f} ms per face (at most {params.max_latency_ms:g})"),
    ]  # fmt: skip


# Loading and measuring -----------------------------------------------------------------------
def run_split(client: MlflowClient, run_id: str, into: Path) -> Path:
    """The split file the run trained and was tested on (logged by train() as data/split.csv)."""
    from mlflow.exceptions import MlflowException

    try:
        return Path(client.download_artifacts(run_id, "data/split.csv", str(into)))
    except (MlflowException, OSError) as exc:
        raise GateError(f"run {run_id} has no data/split.csv artifact: {exc}") from exc


def describe_version(client: MlflowClient, version: Any) -> ModelScores:
    """The version's run, labels and input spec, not yet scored (enough to refuse a champion
    with another label set without loading anything)."""
    import json

    run_id = version.run_id or (version.tags or {}).get("run_id")
    if not run_id:
        raise GateError(f"{version.name} v{version.version} has no source run")
    run = client.get_run(run_id)
    try:
        labels = [str(x) for x in json.loads(run.data.params["labels"])]
        size = int(run.data.params.get("image_size", 48))
    except (KeyError, ValueError) as exc:
        raise GateError(
            f"run {run_id} has no `labels` param: not logged by `emotionops train`"
        ) from exc
    return ModelScores(int(version.version), run_id, labels, size, None,
                       test_fingerprint=run.data.tags.get("test_set_fingerprint", ""))  # fmt: skip


def score(
    client: MlflowClient, tracking_uri: str, scores: ModelScores, test: EvalSet, predict_batch: int
) -> None:
    """Load the run's Keras model and TFLite file and fill `scores` from `test`."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from emotionops.training.evaluate import evaluate_probs, keras_predictor

    mlflow.set_tracking_uri(tracking_uri)
    try:
        model = mlflow.tensorflow.load_model(f"runs:/{scores.run_id}/model")
    except (MlflowException, OSError, ValueError) as exc:
        raise GateError(f"v{scores.version}: cannot load its model: {exc}") from exc
    keras_probs = keras_predictor(model, predict_batch)(test.images)
    scores.evaluation = evaluate_probs(lambda x: keras_probs, test.images, test.labels,
                                       scores.labels, flip_check=False)  # fmt: skip
    _measure_tflite(client, scores.run_id, scores, test, keras_probs)


def _measure_tflite(
    client: MlflowClient, run_id: str, scores: ModelScores, test: EvalSet, keras_probs: np.ndarray
) -> None:
    """Fill the TFLite figures: load in the edge runtime, top-1 agreement, latency per face."""
    from mlflow.exceptions import MlflowException

    from emotionops.edge.classifier import ClassifierError, load_model_dir

    with tempfile.TemporaryDirectory(prefix="emotionops-gate-") as tmp:
        try:
            local = Path(client.download_artifacts(run_id, "tflite", tmp))
            classifier = load_model_dir(local)
            faces = test.images[..., 0].astype(np.float32)
            probs = np.concatenate(
                [classifier.predict_proba(faces[i : i + 64]) for i in range(0, len(faces), 64)]
            )
            timings = []
            for face in faces[:LATENCY_FACES]:
                started = time.perf_counter()
                classifier.predict_proba(face[None])
                timings.append((time.perf_counter() - started) * 1000)
        except (MlflowException, OSError, ClassifierError, ValueError, RuntimeError) as exc:
            scores.tflite_error = f"TFLite artifact unusable on the edge: {exc}"
            return
    if classifier.labels != scores.labels or probs.shape != keras_probs.shape:
        scores.tflite_error = (
            f"TFLite artifact does not match its model: labels {classifier.labels} vs "
            f"{scores.labels}, outputs {probs.shape[1:]} vs {keras_probs.shape[1:]}"
        )
        return
    scores.tflite_agreement = float(np.mean(probs.argmax(1) == keras_probs.argmax(1)))
    scores.tflite_latency_ms = float(np.median(timings))
