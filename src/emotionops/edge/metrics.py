"""`/healthz` and Prometheus `/metrics` of the edge service, on a small local HTTP server.

The metrics are counts and timings only (fps, latency, faces, tracks, reconnects, dropped
frames, outbox depth, model version): nothing that identifies a person.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, make_wsgi_app

from emotionops.edge.service import EdgeStats

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


class EdgeMetrics:
    """Prometheus collectors for one edge process, fed once per frame."""

    def __init__(self, camera_id: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r, labels = self.registry, {"camera_id": camera_id}
        self.camera_id = camera_id
        self.frames = Counter("edge_frames", "Frames processed", registry=r)
        self.latency = Histogram(
            "edge_frame_seconds", "Processing time per frame", buckets=LATENCY_BUCKETS, registry=r
        )
        self.faces = Histogram(
            "edge_faces_per_detection",
            "Faces found per detection frame",
            buckets=(0, 1, 2, 3, 5, 8, 13, 21),
            registry=r,
        )
        self.fps = Gauge("edge_fps", "Frames per second over the last seconds", registry=r)
        self.tracks = Gauge("edge_tracks_in_view", "Confirmed face tracks in view", registry=r)
        self.tracks_seen = Gauge("edge_tracks_seen", "Distinct tracks since start", registry=r)
        self.reconnects = Gauge("edge_source_reconnects", "Camera reopenings", registry=r)
        self.dropped = Gauge("edge_source_dropped_frames", "Live frames skipped", registry=r)
        self.bad = Gauge("edge_source_bad_frames", "Unreadable frames skipped", registry=r)
        self.stalls = Gauge("edge_source_stalls", "Times the source went silent", registry=r)
        self.outbox_depth = Gauge("edge_outbox_depth", "Window rows waiting to be sent", registry=r)
        self.model = Info("edge_model", "The model version serving", registry=r)
        self.model_swaps = Gauge("edge_model_swaps", "Hot swaps since start", registry=r)
        self.camera = Info("edge_camera", "This edge service", registry=r)
        self.camera.info(labels)
        self._fps_window: list[float] = []

    def frame(self, seconds: float, faces: int | None, stats: EdgeStats) -> None:
        """Record one frame; `faces` is None on frames the detector skipped."""
        now = time.monotonic()
        self.frames.inc()
        self.latency.observe(seconds)
        if faces is not None:
            self.faces.observe(faces)
        self._fps_window.append(now)
        while self._fps_window and now - self._fps_window[0] > 5.0:
            self._fps_window.pop(0)
        span = now - self._fps_window[0]
        if span > 0:
            self.fps.set((len(self._fps_window) - 1) / span)
        self.tracks.set(stats.tracks_in_view)
        self.tracks_seen.set(stats.tracks_seen)
        src = stats.source
        self.reconnects.set(src.reconnects)
        self.dropped.set(src.dropped_frames)
        self.bad.set(src.bad_frames)
        self.stalls.set(src.stalls)

    def model_version(self, name: str, version: str | None, swaps: int) -> None:
        self.model.info({"name": name, "version": str(version)})
        self.model_swaps.set(swaps)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:  # scrapes every few seconds: not worth a log line
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class HealthServer:
    """Serves `/metrics` from the registry and `/healthz` from `health()` in a thread.

    `/healthz` answers 200 while `health()` says `ok`, else 503, with the dict as JSON.
    """

    def __init__(
        self,
        metrics: EdgeMetrics,
        health: Callable[[], dict[str, Any]],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        metrics_app = make_wsgi_app(metrics.registry)

        def app(environ: dict[str, Any], start_response: Callable) -> list[bytes]:
            if environ.get("PATH_INFO") == "/healthz":
                body = health()
                status = "200 OK" if body.get("ok") else "503 Service Unavailable"
                start_response(status, [("Content-Type", "application/json")])
                return [json.dumps(body).encode()]
            return metrics_app(environ, start_response)

        self._server = make_server(
            host, port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self.port = self._server.server_port
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="edge-health", daemon=True
        )

    def __enter__(self) -> HealthServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
