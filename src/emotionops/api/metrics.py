"""Prometheus metrics of one app: request counts and latency per endpoint, faces per image,
the model in service. Each app has its own registry, so two apps in one process (tests, a
reload) never collide; endpoints are route templates (`/cameras/{camera_id}`), never raw
paths, so a scan of random URLs cannot blow up the label set."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from emotionops.api.models import ModelStatus

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
FACE_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50)


class _ModelCollector(Collector):
    """Reads the model status at scrape time, so a hot swap shows up at once."""

    def __init__(self, status: Callable[[], ModelStatus]) -> None:
        self._status = status

    def collect(self) -> Iterator:
        st = self._status()
        loaded = GaugeMetricFamily(
            "emotionops_api_model_loaded", "1 when a model is loaded and /predict can answer"
        )
        loaded.add_metric([], 1.0 if st.loaded else 0.0)
        yield loaded
        swaps = GaugeMetricFamily(
            "emotionops_api_model_swaps", "champion hot swaps since the app started"
        )
        swaps.add_metric([], float(st.swaps))
        yield swaps
        info = InfoMetricFamily("emotionops_api_model", "the model in service")
        info.add_metric(
            [], {"name": st.model_name, "version": st.version or "", "source": st.source}
        )
        yield info


class ApiMetrics:
    def __init__(self, model_status: Callable[[], ModelStatus]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "emotionops_api_requests",
            "HTTP requests by endpoint (route template), method and status",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "emotionops_api_request_duration_seconds",
            "request latency by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.faces = Histogram(
            "emotionops_api_faces_per_image",
            "faces found per image on /predict",
            buckets=FACE_BUCKETS,
            registry=self.registry,
        )
        self.ingested = Counter(
            "emotionops_api_ingested_windows",
            "window rows accepted on /ingest",
            registry=self.registry,
        )
        self.registry.register(_ModelCollector(model_status))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request once routing is known."""

    def __init__(self, app, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        began = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - began)
            self.metrics.requests.labels(endpoint, scope["method"], str(status["code"])).inc()
