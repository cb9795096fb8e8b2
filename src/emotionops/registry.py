"""MLflow model registry: register a training run's model, gate it, move aliases.

Promotion goes through aliases, never stages: the edge loads `models:/<name>@champion`, so
promoting or rolling back is moving that alias. Every version carries tags (test_accuracy,
run_id, dataset_version, gate decision) so the registry UI alone explains each move.

`register` makes a run's model a new version with alias `challenger`; `promote` gates it
against the champion (emotionops.gate: both scored here on the same frozen test faces, the
TFLite file checked on the edge runtime) under the model's promotion lease in the warehouse,
and moves `champion` only when every check passes; `rollback` moves `champion` back to the
version it replaced; `status` lists versions, aliases and the decision history.

Audit: every alias move produces an `AliasMove` (model, version, alias, previous holder,
decision, reason, metrics compared, time, run id). It is kept durably on the version it moved
to, as the JSON list in the version tag `audit`, so `emotionops warehouse load-run <run id>`
can always copy it into the warehouse's `model_promotion` table (a retry after a crash
included); it is also returned in `Promotion.moves` and passed to any `on_move` callback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emotionops import tracking

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from sqlalchemy import Engine

    from emotionops.gate import GateDecision
    from emotionops.params import RegistryParams

CHAMPION = "champion"
CHALLENGER = "challenger"
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}


class RegistryError(tracking.TrackingError):
    """The registry (part of the tracking server) is unreachable or refused an operation."""


AUDIT_TAG = "audit"  # version tag: JSON list of the alias moves onto that version


@dataclass(frozen=True)
class AliasMove:
    """One alias move, the audit trail's unit (a `model_promotion` row in the warehouse)."""

    model_name: str
    model_version: int
    alias: str
    decision: str  # registered (alias challenger) | promoted | refused (recorded) | rollback
    previous_version: int | None  # who held `alias` before
    reason: str
    decided_at: datetime  # UTC; the warehouse key keeps whole seconds (as_row)
    metric_name: str | None = None
    new_value: float | None = None  # this version's metric
    old_value: float | None = None  # the value it was compared with (the champion's)
    run_id: str | None = None
    dataset_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "decided_at": self.decided_at.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AliasMove:
        known = {k: data.get(k) for k in cls.__dataclass_fields__}
        known["decided_at"] = datetime.fromisoformat(str(data["decided_at"]))
        known["model_version"] = int(data["model_version"])
        if known.get("previous_version") is not None:
            known["previous_version"] = int(known["previous_version"])
        return cls(**known)

    def as_row(self) -> dict[str, Any]:
        """The warehouse `model_promotion` row."""
        row = asdict(self)
        row["decided_at"] = self.decided_at.replace(microsecond=0)
        row["model_version"] = str(self.model_version)
        row["previous_version"] = (
            None if self.previous_version is None else str(self.previous_version)
        )
        return row


@dataclass(frozen=True)
class Promotion:
    version: int
    promoted: bool
    previous_version: int | None
    reason: str
    moves: tuple[AliasMove, ...] = field(default_factory=tuple)
    decision: GateDecision | None = None  # every check with its figures


def ensure_reachable(tracking_uri: str) -> None:
    """`tracking.ensure_reachable`, failing as a RegistryError (what registry callers catch)."""
    try:
        tracking.ensure_reachable(tracking_uri)
    except tracking.TrackingError as exc:
        raise RegistryError(str(exc)) from exc


def _client(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _alias_version(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        # A missing model is RESOURCE_DOES_NOT_EXIST; a missing alias on an existing model is
        # INVALID_PARAMETER_VALUE "... alias X not found" (MLflow 3.17).
        if exc.error_code in _NOT_FOUND or (
            exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc)
        ):
            return None
        raise RegistryError(f"reading alias {model_name}@{alias} failed: {exc}") from exc


def get_alias_version(tracking_uri: str, model_name: str, alias: str) -> ModelVersion | None:
    """The version `alias` points to, or None when the model or the alias does not exist."""
    ensure_reachable(tracking_uri)
    return _alias_version(_client(tracking_uri), model_name, alias)


def audit_moves(version: ModelVersion) -> list[AliasMove]:
    """The alias moves recorded on `version` (its `audit` tag); [] when it has none."""
    raw = (version.tags or {}).get(AUDIT_TAG)
    if not raw:
        return []
    try:
        return [AliasMove.from_json(item) for item in json.loads(raw)]
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryError(
            f"{version.name} v{version.version}: unreadable `{AUDIT_TAG}` tag: {exc}"
        ) from exc


def _version(client: MlflowClient, model_name: str, version: int | str) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(model_name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{model_name} has no version {version!r}: {exc.message}") from exc


def move_alias(
    client: MlflowClient,
    version: ModelVersion,
    alias: str,
    decision: str,
    reason: str,
    previous: ModelVersion | None,
    on_move: Callable[[AliasMove], None] | None = None,
    metric: tuple[str, float | None, float | None] = ("macro_f1", None, None),
    move: bool = True,
) -> AliasMove:
    """Point `alias` at `version` (unless `move` is False: a refused decision, recorded only)
    and append the decision to the version's audit tag, then tell `on_move`."""
    if move:
        client.set_registered_model_alias(version.name, alias, version.version)
    record = AliasMove(
        model_name=version.name,
        model_version=int(version.version),
        alias=alias,
        decision=decision,
        previous_version=int(previous.version) if previous is not None else None,
        reason=reason[:500],
        decided_at=datetime.now(UTC),  # microseconds: orders moves within one second
        metric_name=metric[0],
        new_value=metric[1],
        old_value=metric[2],
        run_id=version.run_id or (version.tags or {}).get("run_id"),
        dataset_version=(version.tags or {}).get("dataset_version"),
    )
    fresh = client.get_model_version(version.name, version.version)  # other moves' tags too
    history = [m.to_json() for m in audit_moves(fresh)] + [record.to_json()]
    client.set_model_version_tag(version.name, version.version, AUDIT_TAG, json.dumps(history))
    if on_move is not None:
        on_move(record)
    return record


def register(
    tracking_uri: str,
    model_name: str,
    run_id: str,
    on_move: Callable[[AliasMove], None] | None = None,
    once: bool = False,
) -> ModelVersion:
    """Register the run's model as a new version of `model_name`, alias `challenger`, tagged
    with what a reviewer needs: dataset version, git commit, label set and key metrics.
    `once`: a run registered before returns that version (a retried scheduler task)."""
    ensure_reachable(tracking_uri)
    import mlflow
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise RegistryError(f"no MLflow run {run_id!r} at {tracking_uri}: {exc.message}") from exc
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    # once: a retried task finds the version it made before instead of adding one.
    existing = once and [
        v
        for v in client.search_model_versions(f"name = '{model_name}'")
        if v.run_id == run_id or (v.tags or {}).get("run_id") == run_id
    ]
    if existing:
        return min(existing, key=lambda v: int(v.version))
    models = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
        output_format="list",
    )
    model = next((m for m in models if m.name == "model"), None)
    if model is None:
        raise RegistryError(f"run {run_id} logged no model named `model`: not a training run")
    data = run.data
    tags = {
        "run_id": run_id,
        "dataset_version": data.tags.get("dataset_version", "unversioned"),
        "git_commit": data.tags.get("git_commit", "unknown"),
        "labels": data.params.get("labels", ""),
        "tflite_uri": f"runs:/{run_id}/tflite",
        **{
            k: f"{data.metrics[k]:.6f}"
            for k in (
                "test_accuracy",
                "test_macro_f1",
                "test_ferplus_accuracy",
                "test_ferplus_macro_f1",
            )
            if k in data.metrics
        },
    }
    try:
        version = mlflow.register_model(model.model_uri, model_name, tags=tags)
        holder = _alias_version(client, model_name, CHALLENGER)
        move_alias(client, version, CHALLENGER, "registered", "new version from training",
                   holder, on_move)  # fmt: skip
    except MlflowException as exc:
        raise RegistryError(f"registering run {run_id} as {model_name} failed: {exc}") from exc
    return version


def promote(
    tracking_uri: str,
    model_name: str,
    faces_root: Path,
    params: RegistryParams,
    engine: Engine,
    version: int | None = None,
    predict_batch: int = 256,
    on_move: Callable[[AliasMove], None] | None = None,
    once: bool = False,
) -> Promotion:
    """Gate `version` (default: the `challenger`) against the current champion and move
    `champion` when it passes (emotionops.gate). Under the model's promotion lease in the
    warehouse, the champion is read again right before the decision, so two promotions at
    once compare against each other's result and the worse model never ends up serving."""
    ensure_reachable(tracking_uri)
    from mlflow.exceptions import MlflowException

    from emotionops.warehouse.lease import promotion_lease

    client = _client(tracking_uri)
    try:
        with promotion_lease(engine, model_name, ttl_s=params.lease_s):
            challenger = (
                _version(client, model_name, version)
                if version is not None
                else _alias_version(client, model_name, CHALLENGER)
            )
            if challenger is None:
                raise RegistryError(
                    f"{model_name} has no challenger: register a run first or pass --version"
                )
            champion = _alias_version(client, model_name, CHAMPION)  # re-read under the lease
            earlier = (challenger.tags or {}).get("gate")
            if once and (earlier or (champion and champion.version == challenger.version)):
                # A retried or re-run task: the earlier decision stands, nothing moves.
                return Promotion(
                    version=int(challenger.version),
                    promoted=False,
                    previous_version=int(champion.version) if champion is not None else None,
                    reason=f"v{challenger.version} was gated before ({earlier or 'champion'})",
                )
            if champion is not None and champion.version == challenger.version:
                raise RegistryError(f"{model_name} v{challenger.version} is the champion already")
            decision = gate_decision(client, tracking_uri, challenger, champion, faces_root,
                                     params, predict_batch)  # fmt: skip
            for key, value in {
                "gate": "promoted" if decision.promote else "refused",
                "gate_reason": decision.reason[:5000],
                "gate_figures": json.dumps(decision.figures()),
            }.items():
                client.set_model_version_tag(model_name, challenger.version, key, value)
            record = move_alias(
                client, challenger, CHAMPION, "promoted" if decision.promote else "refused",
                decision.reason, champion, on_move,
                (decision.metric_name, decision.challenger.macro_f1,
                 decision.champion.macro_f1 if decision.champion else None),
                move=decision.promote,
            )  # fmt: skip
            if decision.promote and challenger.version == getattr(
                _alias_version(client, model_name, CHALLENGER), "version", None
            ):  # it serves now: no longer a challenger
                client.delete_registered_model_alias(model_name, CHALLENGER)
    except MlflowException as exc:
        raise RegistryError(f"promoting {model_name} failed: {exc.message}") from exc
    return Promotion(
        version=int(challenger.version),
        promoted=decision.promote,
        previous_version=int(champion.version) if champion is not None else None,
        reason=decision.reason,
        moves=(record,),
        decision=decision,
    )


def gate_decision(
    client: MlflowClient,
    tracking_uri: str,
    challenger: ModelVersion,
    champion: ModelVersion | None,
    faces_root: Path,
    params: RegistryParams,
    predict_batch: int,
) -> GateDecision:
    """Score both versions on the challenger's test split, on the ruler of params.ruler
    (the original labels or the FER+ majority labels of the same faces), and decide
    (emotionops.gate)."""
    import tempfile

    from emotionops.gate import GateError, decide, describe_version, run_split, score
    from emotionops.training.evaluate import (
        FERPLUS,
        EvaluationError,
        resolve_ruler,
        ruled_set,
        split_eval_set,
    )

    ruler, left_out, n_faces = "original", 0, 0

    try:
        new = describe_version(client, challenger)
        old = describe_version(client, champion) if champion is not None else None
        if old is not None and (old.labels, old.image_size) != (new.labels, new.image_size):
            return decide(new, old, params)  # refused on the mismatch, nothing to score
        with tempfile.TemporaryDirectory(prefix="emotionops-gate-") as tmp:
            split_csv = run_split(client, new.run_id, Path(tmp))
            test = split_eval_set(split_csv, faces_root, new.labels, new.image_size, "test")
            ruler = resolve_ruler(params.ruler, test)
            ruled, left_out = ruled_set(test, ruler)
            n_faces = len(ruled.labels)
            for scores in (new, old):
                if scores is not None:
                    score(client, tracking_uri, scores, ruled, predict_batch)
    except (GateError, EvaluationError) as exc:
        raise RegistryError(f"cannot gate {challenger.name} v{challenger.version}: {exc}") from exc
    decision = decide(new, old, params, ruler)
    decision.notes.append(
        f"ruler {ruler} (registry.ruler {params.ruler}): "
        + (
            f"FER+ majority labels of {n_faces} test faces, {left_out} without a majority "
            "in the label set left out"
            if ruler == FERPLUS
            else f"the original labels of {n_faces} test faces"
        )
    )
    if old is not None and old.test_fingerprint and old.test_fingerprint != new.test_fingerprint:
        decision.notes.append(
            f"champion v{old.version} was tested on another split (dataset "
            f"{(champion.tags or {}).get('dataset_version', '?')}): both scored on the "
            f"challenger's (dataset {(challenger.tags or {}).get('dataset_version', '?')})"
        )
    return decision


def rollback(
    tracking_uri: str,
    model_name: str,
    on_move: Callable[[AliasMove], None] | None = None,
) -> AliasMove:
    """Move `champion` back to the version it replaced (from the audit history)."""
    ensure_reachable(tracking_uri)
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        current = _alias_version(client, model_name, CHAMPION)
        if current is None:
            raise RegistryError(f"{model_name} has no champion: nothing to roll back")
        arrivals = [
            m for m in audit_moves(current)
            if m.alias == CHAMPION and m.decision in ("promoted", "rollback")
        ]  # fmt: skip
        previous = arrivals[-1].previous_version if arrivals else None
        if previous is None:
            raise RegistryError(
                f"{model_name} v{current.version} replaced no earlier champion: nothing to roll "
                "back to (promote a version with `emotionops registry promote --version N`)"
            )
        target = _version(client, model_name, previous)
        return move_alias(client, target, CHAMPION, "rollback",
                          f"rolled back from v{current.version}", current, on_move)  # fmt: skip
    except MlflowException as exc:
        raise RegistryError(f"rolling back {model_name} failed: {exc.message}") from exc


@dataclass(frozen=True)
class RegistryStatus:
    model_name: str
    versions: list[dict[str, Any]]  # version, aliases, dataset, accuracy, macro-F1, gate
    history: list[AliasMove]  # every decision, oldest first


def status(tracking_uri: str, model_name: str) -> RegistryStatus:
    """Versions with their aliases and key figures, and the decision history with reasons."""
    ensure_reachable(tracking_uri)
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        found = client.search_model_versions(f"name = '{model_name}'")
    except MlflowException as exc:
        raise RegistryError(f"reading {model_name} failed: {exc.message}") from exc
    if not found:
        raise RegistryError(f"no registered model {model_name!r} at {tracking_uri}")
    aliases: dict[str, list[str]] = {}
    for alias, number in client.get_registered_model(model_name).aliases.items():
        aliases.setdefault(str(number), []).append(alias)
    rows, history = [], []
    for v in sorted(found, key=lambda v: int(v.version)):
        tags = v.tags or {}
        rows.append({
            "version": int(v.version), "aliases": sorted(aliases.get(str(v.version), [])),
            "dataset_version": tags.get("dataset_version", ""),
            "test_accuracy": tags.get("test_accuracy", ""),
            "test_macro_f1": tags.get("test_macro_f1", ""), "gate": tags.get("gate", ""),
        })  # fmt: skip
        history += audit_moves(v)
    return RegistryStatus(model_name, rows, sorted(history, key=lambda m: m.decided_at))


def register_and_promote(
    tracking_uri: str,
    model_name: str,
    run_id: str,
    faces_root: Path,
    params: RegistryParams,
    engine: Engine,
    predict_batch: int = 256,
    on_move: Callable[[AliasMove], None] | None = None,
) -> Promotion:
    """What `train` does after a run: register it as challenger, then gate it."""
    version = register(tracking_uri, model_name, run_id, on_move)
    return promote(tracking_uri, model_name, faces_root, params, engine, int(version.version),
                   predict_batch, on_move)  # fmt: skip
