"""Where the API's classifier comes from: the registry's champion (hot-swapped) or a folder.

The registry source never blocks the app from starting: when the registry is down and no
cached model exists, the app serves /healthz (unhealthy) and 503s on /predict while a
background thread keeps trying; once a model is in, `edge.model.ModelWatcher` swaps in each
new champion after its smoke test, exactly as a camera does.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from emotionops.edge.classifier import LABELS_FILE, ClassifierError, load_model_dir
from emotionops.edge.model import (
    EdgeError,
    ModelWatcher,
    PulledModel,
    pull_champion,
    smoke_test,
)

log = logging.getLogger(__name__)


@dataclass
class ModelStatus:
    """What /healthz and /model say about the model (no secrets, no paths of other hosts)."""

    source: str  # "registry" | "local" | "none"
    loaded: bool
    model_name: str
    version: str | None = None
    error: str | None = None  # why no model is loaded, or why the last poll failed
    warning: str | None = None  # set when serving a fallback (cached model, registry down)
    swaps: int = 0


class ModelSource(Protocol):
    """A provider of the current model; `create_app` accepts any object shaped like this."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def current(self) -> PulledModel | None: ...
    def status(self) -> ModelStatus: ...
    def run_metrics(self) -> tuple[dict[str, float] | None, str | None]: ...


class LocalModelSource:
    """A model directory on disk (model.tflite + labels.json), loaded once at start."""

    def __init__(self, directory: Path, model_name: str = "local") -> None:
        self.directory = Path(directory)
        self.model_name = model_name
        self._model: PulledModel | None = None
        self._error: str | None = "not started"

    def start(self) -> None:
        try:
            meta = json.loads((self.directory / LABELS_FILE).read_text())
            version = str(meta.get("version") or "local")
        except (OSError, json.JSONDecodeError, AttributeError):
            version = "local"  # load_model_dir below names the real problem
        try:
            classifier = load_model_dir(self.directory, version=version)
            smoke_test(classifier)
        except (ClassifierError, EdgeError) as exc:
            self._error = f"local model {self.directory} unusable: {exc}"
            log.error(self._error)
            return
        self._model = PulledModel(self.model_name, version, "", self.directory, classifier)
        self._error = None

    def stop(self) -> None:
        pass

    def current(self) -> PulledModel | None:
        return self._model

    def status(self) -> ModelStatus:
        model = self._model
        return ModelStatus(
            "local",
            model is not None,
            self.model_name,
            model.version if model else None,
            self._error,
        )

    def run_metrics(self) -> tuple[dict[str, float] | None, str | None]:
        return None, "a local model directory has no registry run"


class NoModelSource:
    """No registry and no model directory configured: the app runs and says what to set."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def current(self) -> PulledModel | None:
        return None

    def status(self) -> ModelStatus:
        return ModelStatus(
            "none",
            False,
            self.model_name,
            error="no model source: set EMOTIONOPS_MLFLOW_TRACKING_URI (pull the champion) or "
            "EMOTIONOPS_API_MODEL_DIR (a local model directory)",
        )

    def run_metrics(self) -> tuple[dict[str, float] | None, str | None]:
        return None, "no model source configured"


class RegistryModelSource:
    """`models:/<name>@champion`, pulled into `cache_dir`, re-checked every `poll_s`."""

    def __init__(
        self,
        tracking_uri: str,
        model_name: str,
        cache_dir: Path,
        poll_s: float = 30.0,
        timeout_s: float = 5.0,
        alias: str = "champion",
    ) -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.cache_dir = Path(cache_dir)
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.alias = alias
        self._watcher: ModelWatcher | None = None
        self._error: str | None = "not started"
        self._warning: str | None = None
        self._metrics: dict[str, dict[str, float]] = {}  # run_id -> metrics (immutable)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # Loading --------------------------------------------------------------------------
    def _initial_pull(self) -> None:
        try:
            pulled = pull_champion(
                self.tracking_uri, self.model_name, self.cache_dir, self.alias, self.timeout_s
            )
        except EdgeError as exc:
            self._error = f"no model loaded: {exc}"
            log.error("%s; retrying every %gs", self._error, self.poll_s)
            return
        self._warning = pulled.warning
        self._error = None
        self._watcher = ModelWatcher(
            self.tracking_uri,
            self.model_name,
            self.cache_dir,
            initial=pulled,
            alias=self.alias,
            poll_s=self.poll_s,
            timeout_s=self.timeout_s,
        )
        log.info("serving %s v%s", self.model_name, pulled.version)

    def poll(self) -> None:
        """One step: first load, or one watcher check (a new champion is swapped in)."""
        if self._watcher is None:
            self._initial_pull()
            return
        swapped = self._watcher.check_now()
        self._error = self._watcher.last_error
        if swapped or self._error is None:
            self._warning = None  # the registry answered: no longer a fallback

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
            except Exception:  # the poller must never take the app down
                log.exception("model poll failed; will retry")

    def start(self) -> None:
        self._initial_pull()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="api-model-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s * 4 + 5)
            self._thread = None

    # Reading --------------------------------------------------------------------------
    def current(self) -> PulledModel | None:
        return self._watcher.current if self._watcher is not None else None

    def status(self) -> ModelStatus:
        model = self.current()
        return ModelStatus(
            "registry",
            model is not None,
            self.model_name,
            model.version if model else None,
            self._error,
            self._warning,
            self._watcher.swaps if self._watcher else 0,
        )

    def run_metrics(self) -> tuple[dict[str, float] | None, str | None]:
        """The champion run's metrics (cached per run: a finished run's metrics never change);
        (None, reason) when the registry does not answer."""
        model = self.current()
        if model is None or not model.run_id:
            return None, "no model loaded"
        if model.run_id in self._metrics:
            return self._metrics[model.run_id], None
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        from emotionops.tracking import TrackingError, ensure_reachable

        try:
            ensure_reachable(self.tracking_uri, self.timeout_s)
            run = MlflowClient(tracking_uri=self.tracking_uri).get_run(model.run_id)
        except (TrackingError, MlflowException, OSError) as exc:
            return None, f"run metrics unavailable: {str(exc).splitlines()[0]}"
        metrics = {k: float(v) for k, v in sorted(run.data.metrics.items())}
        if run.info.status == "FINISHED":
            self._metrics[model.run_id] = metrics
        return metrics, None
