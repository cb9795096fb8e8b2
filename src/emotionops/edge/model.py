"""The edge's model: pull the champion, cache and verify it, hot-swap it when the alias moves.

Model delivery follows the registry contract: `models:/<name>@champion` resolves to a run
whose `tflite/` artifact holds `model.tflite` + `labels.json`. Each version is downloaded
once into `cache_dir/<name>/v<version>/` (temp dir + atomic rename, so a crash never
leaves a half model that looks complete), and smoke-tested before it is accepted. When the
registry is down the last accepted model keeps running, loudly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotionops.edge.classifier import (
    LABELS_FILE,
    MODEL_FILE,
    ClassifierError,
    TfliteEmotionClassifier,
    load_model_dir,
)
from emotionops.errors import EmotionOpsError
from emotionops.files import atomic_write

log = logging.getLogger(__name__)

PULLED_FILE = "pulled.json"


class EdgeError(EmotionOpsError):
    """The edge service cannot get a usable model or run its loop."""


class RegistryUnavailable(EdgeError):
    """The MLflow registry (or its artifact store) did not answer."""


class ModelRejected(EdgeError):
    """A model version was downloaded but failed its smoke test; it is never used."""


@dataclass
class PulledModel:
    """An accepted model version on local disk, with its loaded classifier."""

    model_name: str
    version: str
    run_id: str
    path: Path
    classifier: TfliteEmotionClassifier = field(repr=False, compare=False)
    from_cache: bool = False
    warning: str | None = None  # set when this is a fallback (registry down, version refused)


# Registry access --------------------------------------------------------------------------
def _check_reachable(tracking_uri: str, timeout_s: float) -> None:
    """Fail in ~timeout_s instead of MLflow's minutes of retries when the server is down."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import httpx

    try:
        httpx.get(tracking_uri.rstrip("/") + "/health", timeout=timeout_s).raise_for_status()
    except httpx.HTTPError as exc:
        raise RegistryUnavailable(f"model registry at {tracking_uri} unreachable: {exc}") from exc


def resolve_alias(
    tracking_uri: str, model_name: str, alias: str = "champion", timeout_s: float = 5.0
) -> tuple[str, str]:
    """(version, run_id) that `<model_name>@<alias>` points to."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    _check_reachable(tracking_uri, timeout_s)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        mv = client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.get_http_status_code() >= 500:
            raise RegistryUnavailable(f"model registry at {tracking_uri} failed: {exc}") from exc
        raise EdgeError(
            f"cannot resolve models:/{model_name}@{alias} at {tracking_uri}: {exc.message}"
        ) from exc
    except OSError as exc:
        raise RegistryUnavailable(f"model registry at {tracking_uri} unreachable: {exc}") from exc
    if not mv.run_id:
        raise EdgeError(f"{model_name} v{mv.version} has no run_id: cannot find its tflite/")
    return str(mv.version), mv.run_id


def smoke_test(classifier: TfliteEmotionClassifier) -> None:
    """Refuse a model whose outputs are not probabilities over its labels."""
    s = classifier.image_size
    blank = np.full((2, s, s), 128.0, dtype=np.float32)  # batch of 2 also exercises resizing
    try:
        probs = classifier.predict_proba(blank)
    except (ClassifierError, ValueError, RuntimeError) as exc:
        raise ModelRejected(f"smoke test: inference failed: {exc}") from exc
    if probs.shape != (2, len(classifier.labels)):
        raise ModelRejected(f"smoke test: output shape {probs.shape}, expected (2, n_labels)")
    if not np.all(np.isfinite(probs)) or probs.min() < -1e-6 or probs.max() > 1 + 1e-6:
        raise ModelRejected("smoke test: outputs are not probabilities (NaN/inf/out of [0,1])")
    sums = probs.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        raise ModelRejected(f"smoke test: outputs sum to {sums.tolist()}, not 1 (no softmax?)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json_atomic(path: Path, payload: dict) -> None:
    atomic_write(path, json.dumps(payload, indent=2))


def _load_accepted(model_name: str, directory: Path) -> PulledModel | None:
    """A cached version directory, if complete and still passing its checks."""
    meta_path = directory / PULLED_FILE
    if not (meta_path.is_file() and (directory / MODEL_FILE).is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        for name, key in ((MODEL_FILE, "model_sha256"), (LABELS_FILE, "labels_sha256")):
            if _sha256(directory / name) != meta[key]:
                log.warning("%s: cached %s changed on disk; discarding it", directory, name)
                return None
        classifier = load_model_dir(directory, version=str(meta["version"]))
        smoke_test(classifier)
    except (json.JSONDecodeError, KeyError, EdgeError, ClassifierError) as exc:
        log.warning("%s: cached model unusable (%s); discarding it", directory, exc)
        return None
    return PulledModel(
        model_name=model_name,
        version=str(meta["version"]),
        run_id=str(meta["run_id"]),
        path=directory,
        classifier=classifier,
        from_cache=True,
    )


def fetch_version(
    tracking_uri: str, model_name: str, version: str, run_id: str, cache_dir: Path
) -> PulledModel:
    """Cached or freshly downloaded and smoke-tested model version (never a half download)."""
    model_root = Path(cache_dir) / model_name
    final = model_root / f"v{version}"
    cached = _load_accepted(model_name, final)
    if cached is not None and cached.run_id == run_id:
        return cached
    model_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=model_root))
    try:
        local = _download(tracking_uri, run_id, tmp)
        try:
            classifier = load_model_dir(local, version=version)
        except ClassifierError as exc:
            raise ModelRejected(f"{model_name} v{version} refused: {exc}") from exc
        try:
            smoke_test(classifier)
        except ModelRejected as exc:
            raise ModelRejected(f"{model_name} v{version} refused: {exc}") from exc
        meta = {
            "model_name": model_name,
            "version": version,
            "run_id": run_id,
            "model_sha256": _sha256(local / MODEL_FILE),
            "labels_sha256": _sha256(local / LABELS_FILE),
        }
        (local / PULLED_FILE).write_text(json.dumps(meta, indent=2))
        if final.exists():  # stale or corrupt copy (it failed the checks above)
            shutil.rmtree(final)
        os.rename(local, final)  # atomic: `final` is complete or absent
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("pulled %s v%s (run %s) into %s", model_name, version, run_id, final)
    # Reload from the final location so the interpreter does not point into the temp dir.
    return PulledModel(
        model_name=model_name,
        version=version,
        run_id=run_id,
        path=final,
        classifier=load_model_dir(final, version=version),
    )


def _download(tracking_uri: str, run_id: str, dest: Path) -> Path:
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    try:
        local = Path(
            download_artifacts(
                artifact_uri=f"runs:/{run_id}/tflite",
                dst_path=str(dest),
                tracking_uri=tracking_uri,
            )
        )
    except MlflowException as exc:
        if exc.get_http_status_code() >= 500:
            raise RegistryUnavailable(
                f"artifact download from {tracking_uri} failed: {exc}"
            ) from exc
        raise EdgeError(f"run {run_id} has no usable tflite/ artifact: {exc.message}") from exc
    except OSError as exc:
        raise RegistryUnavailable(f"artifact download from {tracking_uri} failed: {exc}") from exc
    missing = [name for name in (MODEL_FILE, LABELS_FILE) if not (local / name).is_file()]
    if missing:
        raise ModelRejected(f"run {run_id} tflite/ artifact lacks {missing}")
    return local


def _pointer(cache_dir: Path, model_name: str, alias: str) -> Path:
    return Path(cache_dir) / model_name / f"@{alias}.json"


def _remember(cache_dir: Path, alias: str, pulled: PulledModel) -> None:
    """Record the last accepted version for `alias`: what we fall back to when offline."""
    _write_json_atomic(
        _pointer(cache_dir, pulled.model_name, alias),
        {"version": pulled.version, "run_id": pulled.run_id},
    )


def load_cached(cache_dir: Path, model_name: str, alias: str = "champion") -> PulledModel | None:
    """The last accepted version for `alias` from the local cache, if usable."""
    pointer = _pointer(cache_dir, model_name, alias)
    try:
        version = str(json.loads(pointer.read_text())["version"])
    except (OSError, json.JSONDecodeError, KeyError):
        return None
    return _load_accepted(model_name, Path(cache_dir) / model_name / f"v{version}")


def pull_champion(
    tracking_uri: str,
    model_name: str,
    cache_dir: Path,
    alias: str = "champion",
    timeout_s: float = 5.0,
) -> PulledModel:
    """Resolve `<model_name>@<alias>`, fetch and smoke-test it; fall back to the cache.

    Falls back to the last accepted model (with `warning` set and logged) when the registry
    is unreachable or the new version fails its smoke test; raises EdgeError when there is
    no cached model to fall back to.
    """
    cache_dir = Path(cache_dir)
    try:
        version, run_id = resolve_alias(tracking_uri, model_name, alias, timeout_s)
        pulled = fetch_version(tracking_uri, model_name, version, run_id, cache_dir)
    except (RegistryUnavailable, ModelRejected) as exc:
        cached = load_cached(cache_dir, model_name, alias)
        if cached is None:
            raise EdgeError(
                f"{exc}; and no cached model for {model_name}@{alias} in {cache_dir}"
            ) from exc
        cached.warning = (
            f"{exc}; USING CACHED {model_name} v{cached.version} (run {cached.run_id}) "
            f"from {cached.path}"
        )
        log.warning(cached.warning)
        return cached
    _remember(cache_dir, alias, pulled)
    return pulled


# Hot swap ---------------------------------------------------------------------------------
class ModelWatcher:
    """Polls `<name>@<alias>` and swaps in a new, smoke-tested classifier when it moves.

    Call the watcher to get the current classifier (it is a `classifier_provider`): the frame
    loop picks it up once per frame, so a swap never drops or stalls a frame; downloads and
    smoke tests run in the polling thread on a separate interpreter.
    """

    def __init__(
        self,
        tracking_uri: str,
        model_name: str,
        cache_dir: Path,
        initial: PulledModel,
        alias: str = "champion",
        poll_s: float = 30.0,
        timeout_s: float = 5.0,
        retry_s: float = 2.0,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.cache_dir = Path(cache_dir)
        self.alias = alias
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.retry_s = min(retry_s, poll_s)
        self.failures = 0  # polls in a row that could not reach the registry
        self.refused: dict[str, str] = {}  # version -> reason; never retried
        self.last_error: str | None = None
        self.swaps = 0
        self._current = initial
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> PulledModel:
        with self._lock:
            return self._current

    def __call__(self) -> TfliteEmotionClassifier:
        return self.current.classifier

    def check_now(self) -> bool:
        """One poll; True when a new version was swapped in."""
        current = self.current
        try:
            version, run_id = resolve_alias(
                self.tracking_uri, self.model_name, self.alias, self.timeout_s
            )
            if version == current.version or version in self.refused:
                self.failures = 0
                self.last_error = None
                return False
            pulled = fetch_version(
                self.tracking_uri, self.model_name, version, run_id, self.cache_dir
            )
        except ModelRejected as exc:
            self.failures = 0
            self.refused[version] = str(exc)
            self.last_error = str(exc)
            log.error("%s; keeping v%s", exc, current.version)
            return False
        except EdgeError as exc:
            self.failures += 1
            self.last_error = str(exc)
            log.warning("%s; keeping v%s", exc, current.version)
            return False
        self.failures = 0
        _remember(self.cache_dir, self.alias, pulled)
        with self._lock:
            self._current = pulled
        self.swaps += 1
        self.last_error = None
        log.info("hot-swapped %s v%s -> v%s", self.model_name, current.version, version)
        return True

    def next_wait_s(self) -> float:
        """poll_s while the registry answers; after failures retry_s, doubling up to poll_s."""
        if self.failures == 0:
            return self.poll_s
        return min(self.poll_s, self.retry_s * 2 ** (self.failures - 1))

    def _loop(self) -> None:
        while not self._stop.wait(self.next_wait_s()):
            try:
                self.check_now()
            except Exception:  # the watcher must never take the edge loop down
                log.exception("model watcher poll failed; will retry")

    def start(self) -> ModelWatcher:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="model-watcher", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def __enter__(self) -> ModelWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
