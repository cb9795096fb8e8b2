"""The inference API: /predict, /model, /ingest, /healthz, /metrics, two pages, the dashboard.

`create_app` is a factory: nothing happens at import time, and every moving part (the model
source, the face detector, the warehouse engine) can be handed in, so tests and the edge
detector rework swap them without touching the routes. uvicorn runs it with
`uvicorn --factory emotionops.api.app:app_from_env` (`make api`).

PRIVACY: uploads are read into memory, decoded, classified and dropped at the end of the
request; no byte, crop or box is written to disk or logged. /ingest accepts aggregate window
counts only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from emotionops.api.ingest import IngestRejected, check_token, live_counts, parse_windows
from emotionops.api.metrics import ApiMetrics, MetricsMiddleware
from emotionops.api.models import (
    LocalModelSource,
    ModelSource,
    NoModelSource,
    RegistryModelSource,
)
from emotionops.api.upload import (
    MULTIPART_OVERHEAD,
    DecodedImage,
    UploadRejected,
    decode_image,
    parse_multipart,
    read_capped,
)
from emotionops.clean.faces import FaceBox, crop_face
from emotionops.errors import EmotionOpsError
from emotionops.notice import LAWFUL_USE
from emotionops.params import Params
from emotionops.settings import Settings

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
MIN_PRODUCTION_TOKEN_CHARS = 16
INGEST_BYTES_PER_WINDOW = 1024  # a window row is ~300 bytes of JSON: the body cap of /ingest
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
#: plotly.js (4.1.1) adds its chart styles as <style> rules at run time, which a strict
#: style-src blocks (plotly/plotly.js#7543: its CSP-strict build is not published), so the
#: dashboard allows inline styles; scripts stay 'self' only, and every page is autoescaped.
DASHBOARD_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


class ApiConfigError(EmotionOpsError):
    """The API cannot start with these settings (e.g. production without an ingest token)."""


# Detection and classification -------------------------------------------------------------
def _as_detection(found: Any) -> tuple[FaceBox, float | None]:
    """A FaceBox (Haar, YuNet) or a `Detection(box, score)` (edge.detect) as (box, score)."""
    if isinstance(found, FaceBox):
        return found, None
    score = getattr(found, "score", None)
    return found.box, None if score is None else float(score)


def detect_scaled(
    detector: Any, image: np.ndarray, max_side: int
) -> list[tuple[FaceBox, float | None]]:
    """Detect on a copy shrunk to `max_side` (as image cleanup does: the cost grows with
    the pixel count, and Haar finds false faces in big photos), boxes in full-image pixels."""
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    work = image
    if scale != 1.0:
        work = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    out = []
    for found in detector.detect(work):
        box, score = _as_detection(found)
        if scale != 1.0:
            box = FaceBox(*(round(v / scale) for v in (box.x, box.y, box.w, box.h)))
        out.append((box, score))
    return out


class Predictor:
    """Faces, labels and probabilities of one decoded image with the current model.

    One lock around detection + inference: a TFLite interpreter is not thread-safe and the
    machine has two cores, so requests queue here instead of fighting over the CPU.
    """

    def __init__(self, source: ModelSource, detector: Any, params: Params) -> None:
        self.source = source
        self.detector = detector
        self.params = params
        self._lock = threading.Lock()

    def __call__(self, decoded: DecodedImage) -> dict[str, Any]:
        model = self.source.current()
        if model is None:
            raise UploadRejected(503, "no_model", _no_model_message(self.source))
        classifier = model.classifier
        ip, ap = self.params.images, self.params.api
        with self._lock:
            found = detect_scaled(self.detector, decoded.image, ip.detect_max_side)
            found = sorted(found, key=lambda f: f[0].area, reverse=True)
            kept = found[: ap.max_faces]
            probs = np.zeros((0, len(classifier.labels)), np.float32)
            if kept:
                size = classifier.image_size
                crops = np.stack(
                    [crop_face(decoded.image, b, size, ip.face_margin) for b, _ in kept]
                )
                probs = classifier.predict_proba(crops)
                del crops  # privacy: crops never outlive the request
        faces = []
        for (box, score), p in zip(kept, probs, strict=True):
            top = int(np.argmax(p))
            faces.append(
                {
                    "box": {"x": box.x, "y": box.y, "w": box.w, "h": box.h},
                    "label": classifier.labels[top],
                    "confidence": round(float(p[top]), 4),
                    "probabilities": {
                        label: round(float(v), 4)
                        for label, v in zip(classifier.labels, p, strict=True)
                    },
                    "detector_score": score,
                }
            )
        answer: dict[str, Any] = {
            "model": {"name": model.model_name, "version": model.version},
            "model_version": model.version,
            "image": {"width": decoded.width, "height": decoded.height, "type": decoded.kind},
            "faces": faces,
            "faces_found": len(found),
        }
        if not found:
            answer["message"] = "no face found in the image"
        elif len(found) > len(kept):
            answer["message"] = (
                f"{len(found)} faces found; the {len(kept)} largest were classified (api.max_faces)"
            )
        return answer


def _no_model_message(source: ModelSource) -> str:
    status = source.status()
    return f"no model loaded yet, predictions are unavailable: {status.error or 'loading'}"


# The warehouse, connected lazily -----------------------------------------------------------
class Warehouse:
    """An engine given by the caller, or one opened (and migrated) from Settings on first
    use, so a warehouse that is down at start-up does not keep the API from serving."""

    def __init__(self, settings: Settings, engine: Any = None) -> None:
        self.settings = settings
        self._engine = engine
        self._owned = engine is None
        self._lock = threading.Lock()

    def engine(self) -> Any:
        with self._lock:
            if self._engine is None:
                from emotionops.warehouse import open_warehouse

                self._engine = open_warehouse(self.settings)
            return self._engine

    def ping(self) -> str | None:
        """None when the warehouse answers a query, else why not."""
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine().connect() as conn:
                conn.execute(text("SELECT 1" + (" FROM dual" if _is_oracle(conn) else "")))
        except (EmotionOpsError, SQLAlchemyError) as exc:
            return str(exc).splitlines()[0]
        return None

    def close(self) -> None:
        if self._owned and self._engine is not None:
            self._engine.dispose()


def _is_oracle(conn: Any) -> bool:
    return conn.dialect.name == "oracle"


# The app ------------------------------------------------------------------------------------
def default_model_source(settings: Settings, params: Params) -> ModelSource:
    """A local model directory if configured, else the registry's champion, else none."""
    if settings.api_model_dir is not None:
        return LocalModelSource(settings.api_model_dir, settings.model_name)
    if settings.mlflow_tracking_uri:
        from emotionops.tracking import use_credentials

        use_credentials(settings)
        return RegistryModelSource(
            settings.mlflow_tracking_uri,
            settings.model_name,
            settings.data_path / "api-models",
            poll_s=params.api.model_poll_s,
            timeout_s=params.api.registry_timeout_s,
        )
    return NoModelSource(settings.model_name)


def check_settings(settings: Settings) -> None:
    """Refuse to serve production without a real ingest token."""
    if settings.environment != "production":
        return
    token = settings.ingest_token.get_secret_value() if settings.ingest_token else ""
    if not token:
        raise ApiConfigError(
            "EMOTIONOPS_ENVIRONMENT=production needs EMOTIONOPS_INGEST_TOKEN (the bearer token "
            "edge devices send to POST /ingest)"
        )
    if len(token) < MIN_PRODUCTION_TOKEN_CHARS:
        raise ApiConfigError(
            f"EMOTIONOPS_INGEST_TOKEN is {len(token)} characters; production needs at least "
            f"{MIN_PRODUCTION_TOKEN_CHARS} (e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`)"
        )


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": message, **extra}, status_code=status)


def create_app(
    settings: Settings,
    params: Params,
    model_source: ModelSource | None = None,
    detector: Any = None,
    engine: Any = None,
) -> FastAPI:
    """The app. `model_source` (default from settings: EMOTIONOPS_API_MODEL_DIR, else the
    registry's champion), `detector` (anything with `.detect(image)` returning FaceBoxes or
    Detection(box, score); default: the cameras' detector, `edge.detection` of params, so the
    upload page shows what a camera would see) and `engine` (default: the
    warehouse of settings, opened on first use) can be swapped."""
    check_settings(settings)
    source = model_source if model_source is not None else default_model_source(settings, params)
    if detector is None:
        from emotionops.edge.detect import make_edge_detector

        detector = make_edge_detector(params.edge.detection)
    warehouse = Warehouse(settings, engine)
    predictor = Predictor(source, detector, params)
    metrics = ApiMetrics(source.status)
    token = settings.ingest_token.get_secret_value() if settings.ingest_token else None
    if token is None:  # local mode only (check_settings)
        log.warning("no EMOTIONOPS_INGEST_TOKEN: POST /ingest takes rows from anyone (local mode)")
    ap = params.api

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(source.start)  # a first pull is bounded by registry_timeout_s
        try:
            yield
        finally:
            await run_in_threadpool(source.stop)
            warehouse.close()

    app = FastAPI(
        title="EmotionOps inference API",
        description=LAWFUL_USE,
        version="1",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load from a CDN; machines here are offline
        redoc_url=None,
    )
    app.state.model_source = source
    app.state.metrics = metrics
    app.state.warehouse = warehouse
    app.state.predictor = predictor  # the core path, for the latency bench
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")

    def secure(response: Response, csp: str = CSP) -> Response:
        response.headers["Content-Security-Policy"] = csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def page(request: Request, name: str, **context: Any) -> Response:
        return secure(
            templates.TemplateResponse(
                request, name, {"notice": LAWFUL_USE, "params": ap, **context}
            )
        )

    # The dashboard (emotionops.dashboard) and the Data Docs site its pages link to.
    from emotionops.dashboard.routes import dashboard_router
    from emotionops.validation import data_docs_index

    app.include_router(
        dashboard_router(
            warehouse.engine,
            params,
            settings.data_path,
            lambda response: secure(response, DASHBOARD_CSP),
        )
    )
    app.mount(
        "/dashboard/data-docs",
        StaticFiles(directory=data_docs_index(settings).parent, html=True, check_dir=False),
        name="data-docs",
    )

    # /predict ------------------------------------------------------------------------------
    upload_doc = {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                }
            },
        }
    }

    @app.post("/predict", openapi_extra=upload_doc)
    async def predict(request: Request) -> Response:
        """Every face in one uploaded image: box, label, probabilities; plus the model."""
        began = time.perf_counter()
        try:
            if source.current() is None:  # say so before reading megabytes
                raise UploadRejected(503, "no_model", _no_model_message(source))
            body = await read_capped(
                request.stream(),
                request.headers.get("content-length"),
                ap.max_upload_bytes + MULTIPART_OVERHEAD,
            )
            upload = parse_multipart(body, request.headers.get("content-type"))
            del body

            def work() -> dict[str, Any]:
                decoded = decode_image(
                    upload.data, ap.max_upload_bytes, ap.max_pixels, ap.allowed_types
                )
                return predictor(decoded)

            answer = await run_in_threadpool(work)
        except UploadRejected as exc:
            return _error(exc.status, exc.code, exc.message)
        metrics.faces.observe(len(answer["faces"]))
        answer["elapsed_ms"] = round((time.perf_counter() - began) * 1000, 2)
        return JSONResponse(answer)

    # /model --------------------------------------------------------------------------------
    @app.get("/model")
    def model_info() -> Response:
        """Name, version, labels and input size of the model in service, and its run's
        metrics when the registry answers."""
        model = source.current()
        status = source.status()
        if model is None:
            return _error(503, "no_model", _no_model_message(source), model=asdict(status))
        run_metrics, metrics_error = source.run_metrics()
        return JSONResponse(
            {
                "name": model.model_name,
                "version": model.version,
                "run_id": model.run_id or None,
                "labels": model.classifier.labels,
                "input_size": [model.classifier.image_size, model.classifier.image_size, 1],
                "source": status.source,
                "from_cache": model.from_cache,
                "warning": status.warning,
                "metrics": run_metrics,
                "metrics_error": metrics_error,
            }
        )

    # /ingest -------------------------------------------------------------------------------
    @app.post("/ingest")
    async def ingest(request: Request) -> Response:
        """Upsert edge window rows (idempotent: the same rows twice leave one row per key)."""
        try:
            check_token(request.headers.get("authorization"), token)
            try:
                body = await read_capped(
                    request.stream(),
                    request.headers.get("content-length"),
                    ap.max_ingest_windows * INGEST_BYTES_PER_WINDOW,
                )
                payload = json.loads(body)
            except UploadRejected as exc:
                raise IngestRejected(exc.status, exc.code, exc.message) from exc
            except ValueError as exc:
                raise IngestRejected(422, "bad_json", f"the body is not JSON: {exc}") from exc
            rows = parse_windows(payload, ap.max_ingest_windows)
        except IngestRejected as exc:
            extra = {"errors": exc.errors} if exc.errors else {}
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            response = _error(exc.status, exc.code, exc.message, **extra)
            if headers:
                response.headers.update(headers)
            return response
        from emotionops.warehouse import WarehouseError, load_emotion_events

        try:
            accepted = await run_in_threadpool(
                lambda: load_emotion_events(warehouse.engine(), rows)
            )
        except WarehouseError as exc:
            return _error(503, "warehouse_unavailable", f"nothing stored: {exc}")
        metrics.ingested.inc(accepted)
        return JSONResponse({"accepted": accepted})

    # /healthz, /metrics --------------------------------------------------------------------
    @app.get("/healthz")
    def healthz() -> Response:
        """200 when a model is loaded and the warehouse answers, else 503 saying which."""
        status = source.status()
        db_error = warehouse.ping()
        healthy = status.loaded and db_error is None
        body = {
            "status": "ok" if healthy else "unhealthy",
            "ingest": "bearer token" if token else "unauthenticated (local mode, no token)",
            "model": {
                "loaded": status.loaded,
                "name": status.model_name,
                "version": status.version,
                "source": status.source,
                "error": status.error,
                "warning": status.warning,
            },
            "warehouse": {"reachable": db_error is None, "error": db_error},
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # Pages -------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def upload_page(request: Request) -> Response:
        return page(request, "upload.html", title="Try a photo")

    @app.get("/cameras/{camera_id}", response_class=HTMLResponse, include_in_schema=False)
    def camera_page(request: Request, camera_id: str) -> Response:
        return page(request, "camera.html", title=f"Camera {camera_id}", camera_id=camera_id)

    @app.get("/api/cameras/{camera_id}/counts")
    def camera_counts(camera_id: str) -> Response:
        """The camera's latest window counts per label and its recent windows (the live page
        polls this)."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            data = live_counts(warehouse.engine(), camera_id, ap.live_windows)
        except (EmotionOpsError, SQLAlchemyError) as exc:
            return _error(503, "warehouse_unavailable", str(exc).splitlines()[0])
        status = source.status()
        data["serving_model_version"] = status.version
        data["refresh_s"] = ap.live_refresh_s
        if data["current"] is None:
            data["message"] = f"no windows from camera {camera_id!r} yet"
        return JSONResponse(data)

    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory: Settings from the environment, params from params.yaml."""
    from emotionops.params import load_params
    from emotionops.settings import get_settings

    settings = get_settings()
    return create_app(settings, load_params(settings.params_path))
