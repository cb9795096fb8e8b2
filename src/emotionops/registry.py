"""MLflow model registry: register a training run's model, gate it, move aliases.

Promotion goes through aliases, never stages: the edge loads `models:/<name>@champion`, so
promoting or rolling back is moving that alias. Every version carries tags (test_accuracy,
run_id, dataset_version, gate decision) so the registry UI alone explains each move.

Foundation-level gate: the new version becomes champion when there is none yet or when its
test_accuracy >= the champion's recorded test_accuracy tag; otherwise it becomes challenger.
(A later gate re-evaluates both on the same frozen test set.)

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
from typing import TYPE_CHECKING, Any

from emotionops import tracking

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from emotionops.training.train import TrainResult

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
    decision: str  # promoted | refused (moved to challenger instead) | rollback
    previous_version: int | None  # who held `alias` before
    reason: str
    decided_at: datetime  # UTC, whole seconds (part of the warehouse key)
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


def _recorded_accuracy(version: ModelVersion) -> float | None:
    try:
        return float(version.tags["test_accuracy"])
    except (KeyError, TypeError, ValueError):
        return None


def decide(new_accuracy: float, champion: ModelVersion | None) -> tuple[bool, str]:
    """The foundation-level gate: (promote?, human-readable reason)."""
    if champion is None:
        return True, "no champion yet"
    old = _recorded_accuracy(champion)
    if old is None:
        return False, (
            f"champion v{champion.version} has no test_accuracy tag; not replacing it "
            "automatically (promote by hand if intended)"
        )
    if new_accuracy >= old:
        return True, f"test_accuracy {new_accuracy:.4f} >= champion v{champion.version} {old:.4f}"
    return False, f"test_accuracy {new_accuracy:.4f} < champion v{champion.version} {old:.4f}"


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


def _record_move(
    client: MlflowClient,
    move: AliasMove,
    version: ModelVersion,
    on_move: Callable[[AliasMove], None] | None,
) -> None:
    """Append `move` to the version's audit tag, then tell `on_move`."""
    history = [m.to_json() for m in audit_moves(version)] + [move.to_json()]
    client.set_model_version_tag(
        move.model_name, str(move.model_version), AUDIT_TAG, json.dumps(history)
    )
    if on_move is not None:
        on_move(move)


def register_and_promote(
    tracking_uri: str,
    model_name: str,
    result: TrainResult,
    alias: str = CHAMPION,
    on_move: Callable[[AliasMove], None] | None = None,
) -> Promotion:
    """Register `result.model_uri` as a new version of `model_name` and apply the gate.

    The alias move (to `alias` when promoted, to challenger when refused) is audited: see
    the module docstring."""
    ensure_reachable(tracking_uri)
    import mlflow
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        champion = _alias_version(client, model_name, alias)
        # register_model resolves LoggedModel URIs (models:/m-...) through the fluent client.
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        version = mlflow.register_model(
            result.model_uri,
            model_name,
            tags={
                "test_accuracy": f"{result.test_accuracy:.6f}",
                "test_macro_f1": f"{result.test_macro_f1:.6f}",
                "run_id": result.run_id,
                "dataset_version": result.dataset_version or "unversioned",
                "tflite_uri": result.tflite_uri or f"runs:/{result.run_id}/tflite",
                "tflite_parity": f"{result.tflite_parity:.3g}",
            },
        )
        promoted, reason = decide(result.test_accuracy, champion)
        target = alias if promoted else CHALLENGER
        holder = champion if promoted else _alias_version(client, model_name, CHALLENGER)
        client.set_registered_model_alias(model_name, target, version.version)
        client.set_model_version_tag(model_name, version.version, "gate", target)
        client.set_model_version_tag(model_name, version.version, "gate_reason", reason)
        move = AliasMove(
            model_name=model_name,
            model_version=int(version.version),
            alias=target,
            decision="promoted" if promoted else "refused",
            previous_version=int(holder.version) if holder is not None else None,
            reason=reason,
            decided_at=datetime.now(UTC).replace(microsecond=0),
            metric_name="test_accuracy",
            new_value=float(result.test_accuracy),
            old_value=_recorded_accuracy(champion) if champion is not None else None,
            run_id=result.run_id,
            dataset_version=result.dataset_version,
        )
        _record_move(client, move, version, on_move)
    except MlflowException as exc:
        raise RegistryError(
            f"registering {result.model_uri} as {model_name} failed: {exc}"
        ) from exc
    return Promotion(
        version=int(version.version),
        promoted=promoted,
        previous_version=int(champion.version) if champion is not None else None,
        reason=reason,
        moves=(move,),
    )
