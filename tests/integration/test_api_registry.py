"""The API against a real MLflow registry: it pulls the champion at start, shows the run's
metrics, hot-swaps when the alias moves, and starts from its cache when the registry is gone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from _factories import write_tiny_tflite
from emotionops.acquire.scrape.synthetic import make_face
from emotionops.api.app import create_app
from emotionops.api.models import RegistryModelSource
from emotionops.params import Params
from emotionops.settings import Settings
from emotionops.tracking import free_port
from emotionops.warehouse import connect, init_schema

pytestmark = pytest.mark.integration

LABELS = ["happy", "sad", "neutral"]


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(0.05)  # polling interval while waiting on the poller thread


def register(tracking_uri: str, name: str, model_dir: Path, metrics: dict[str, float]) -> str:
    """A finished run with `tflite/` artifacts and metrics, registered as a new version."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name(f"api-{name}")
    if experiment is None:
        experiment_id = client.create_experiment(f"api-{name}")
        client.create_registered_model(name)
    else:  # a second version
        experiment_id = experiment.experiment_id
    run = client.create_run(experiment_id)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.log_artifacts(run.info.run_id, str(model_dir), "tflite")
    client.set_terminated(run.info.run_id)
    mv = client.create_model_version(
        name, source=f"runs:/{run.info.run_id}/tflite", run_id=run.info.run_id
    )
    client.set_registered_model_alias(name, "champion", mv.version)
    return str(mv.version)


def face_jpeg() -> bytes:
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[100:300, 200:400] = make_face("happy", np.random.default_rng(0), 200)[..., None]
    return cv2.imencode(".jpg", canvas)[1].tobytes()


def test_api_pulls_the_champion_and_follows_the_alias(mlflow_server: str, tmp_path: Path) -> None:
    name = f"api-{uuid.uuid4().hex[:8]}"
    happy = write_tiny_tflite(tmp_path / "happy", LABELS, 48, 1.0)
    sad = write_tiny_tflite(tmp_path / "sad", LABELS, 48, -1.0)
    assert register(mlflow_server, name, happy, {"test_macro_f1": 0.81}) == "1"
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        mlflow_tracking_uri=mlflow_server,
        model_name=name,
        ingest_token=SecretStr("registry-test-token-0123456789"),
    )
    params = Params.model_validate(
        {"api": {"model_poll_s": 0.2}, "edge": {"detection": {"detector": "haar"}}}
    )
    engine = connect(f"sqlite:///{tmp_path / 'warehouse.db'}")
    init_schema(engine)
    photo = {"file": ("photo.jpg", face_jpeg(), "image/jpeg")}
    with TestClient(create_app(settings, params, engine=engine)) as client:  # default source
        model = client.get("/model").json()
        assert (model["name"], model["version"], model["source"]) == (name, "1", "registry")
        assert model["metrics"] == {"test_macro_f1": 0.81} and model["metrics_error"] is None
        assert model["labels"] == LABELS
        assert (settings.data_path / "api-models" / name / "v1").is_dir()  # the cache
        first = client.post("/predict", files=photo).json()
        assert first["model_version"] == "1" and first["faces"][0]["label"] == "happy"

        assert register(mlflow_server, name, sad, {"test_macro_f1": 0.86}) == "2"
        wait_for(lambda: client.get("/healthz").json()["model"]["version"] == "2")
        second = client.post("/predict", files=photo).json()
        assert second["model_version"] == "2" and second["faces"][0]["label"] == "sad"
        assert client.get("/model").json()["metrics"] == {"test_macro_f1": 0.86}
        text = client.get("/metrics").text
        assert "emotionops_api_model_swaps 1.0" in text
        assert f'emotionops_api_model_info{{name="{name}",source="registry",version="2"}}' in text

    # The registry is gone: a fresh start serves the cached champion and says so.
    down = f"http://127.0.0.1:{free_port()}"
    offline = RegistryModelSource(down, name, settings.data_path / "api-models", 60, 1.0)
    with TestClient(create_app(settings, params, model_source=offline, engine=engine)) as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["model"]["version"] == "2"
        assert "USING CACHED" in health.json()["model"]["warning"]
        model = client.get("/model").json()
        assert model["from_cache"] is True and model["metrics"] is None
        assert "unavailable" in model["metrics_error"]
        assert client.post("/predict", files=photo).json()["faces"][0]["label"] == "sad"
    engine.dispose()
