"""The edge process: the model watcher, the frame loop, the outbox sender and `/healthz` +
`/metrics`, started and stopped together.

Order matters for "nothing lost": the outbox opens first (rows a previous process left are
sent as soon as the sink answers), every closed window is committed to it before the loop
moves on, and on the way out the sender gets `stop_timeout_s` to drain; what it could not
send stays on disk for the next start.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from emotionops.edge.detect import FaceDetector
from emotionops.edge.metrics import EdgeMetrics, HealthServer
from emotionops.edge.model import ModelWatcher, PulledModel, pull_champion
from emotionops.edge.outbox import Sink, open_outbox
from emotionops.edge.report import EmotionWindow
from emotionops.edge.service import EdgeStats, FrameHook, blurred_view, run_edge
from emotionops.edge.track import Track
from emotionops.errors import EmotionOpsError
from emotionops.params import EdgeParams

log = logging.getLogger(__name__)


class DisplayUnavailable(EmotionOpsError):
    """`--display` needs OpenCV with a GUI backend; the edge environment ships the headless one."""


@dataclass(frozen=True)
class ModelSource:
    """Where the edge gets its model: `models:/<name>@<alias>` on this registry, cached here."""

    tracking_uri: str
    model_name: str
    cache_dir: Path
    alias: str = "champion"


@dataclass
class EdgeRun:
    """What one run of the service did (aggregates and counters only)."""

    windows: list[EmotionWindow]
    stats: EdgeStats
    model_version: str
    rows_left: int  # rows still in the outbox at exit (sent by the next start)
    health_url: str | None


def display_hook() -> FrameHook:
    """A local window showing the stream with faces pixelated and their labels."""
    import cv2

    try:
        cv2.namedWindow("emotionops edge", cv2.WINDOW_NORMAL)
    except cv2.error as exc:
        raise DisplayUnavailable(
            "--display needs OpenCV built with a GUI (pip install opencv-python in place of "
            f"opencv-python-headless) and a desktop session: {exc.err}"
        ) from exc

    def show(frame: np.ndarray, tracks: list[Track], seconds: float, faces: int | None) -> None:
        cv2.imshow("emotionops edge", blurred_view(frame, tracks))
        cv2.waitKey(1)

    return show


def serve(
    source: str,
    model: ModelSource,
    params: EdgeParams,
    detector: FaceDetector,
    sink: Sink,
    outbox_path: Path,
    start_time: datetime,
    health_host: str = "127.0.0.1",
    health_port: int | None = 0,
    max_frames: int | None = None,
    stop: threading.Event | None = None,
    face_margin: float = 0.15,
    display: bool = False,
    on_started: Callable[[str | None], None] | None = None,
    pulled: PulledModel | None = None,
) -> EdgeRun:
    """Run the edge service on `source` until it ends, `max_frames` or `stop` is set.

    The model comes from the cache when the registry is down at start (EdgeError when there
    is none), unless the caller pulled it already (`pulled`). `health_port` None: no HTTP
    server; 0: a free port (see `EdgeRun.health_url`).
    """
    hooks: list[FrameHook] = [display_hook()] if display else []
    if pulled is None:
        pulled = pull_champion(model.tracking_uri, model.model_name, model.cache_dir, model.alias)
    stats = EdgeStats()
    metrics = EdgeMetrics(params.camera_id)
    outbox = open_outbox(outbox_path, params.outbox)
    watcher = ModelWatcher(
        model.tracking_uri,
        model.model_name,
        model.cache_dir,
        pulled,
        alias=model.alias,
        poll_s=params.poll_s,
        retry_s=params.retry_s,
    )
    sender = outbox.sender(sink)

    def health() -> dict[str, Any]:
        sent = sender.stats()
        current = watcher.current
        since_frame = time.monotonic() - stats.last_frame_at if stats.frames_read else None
        return {
            # Healthy: a model serves and the camera delivered a frame within stall_s.
            "ok": since_frame is not None and since_frame < params.stall_s,
            "seconds_since_frame": since_frame,
            "camera_id": params.camera_id,
            "model_version": current.version,
            "model_from_cache": current.from_cache,
            "registry_error": watcher.last_error,
            "frames": stats.frames_read,
            "outbox_depth": sent.depth,
            "sink_error": sent.last_error if sent.consecutive_failures else None,
        }

    refreshed = {"at": 0.0}

    def on_frame(frame: np.ndarray, tracks: list[Track], seconds: float, faces: int | None) -> None:
        metrics.frame(seconds, faces, stats)
        if stats.last_frame_at - refreshed["at"] >= 1.0:  # SQL and registry state: once a second
            refreshed["at"] = stats.last_frame_at
            metrics.outbox_depth.set(outbox.depth())
            metrics.model_version(model.model_name, watcher.current.version, watcher.swaps)
        for hook in hooks:
            hook(frame, tracks, seconds, faces)

    def on_window(window: EmotionWindow) -> None:
        outbox.enqueue([window])  # on disk before the loop goes on

    metrics.model_version(model.model_name, pulled.version, 0)
    server = (
        HealthServer(metrics, health, health_host, health_port) if health_port is not None else None
    )
    try:
        with watcher, contextlib.ExitStack() as running:
            sender.start()
            if server is not None:
                running.enter_context(server)
            if on_started is not None:
                on_started(server.url if server else None)
            windows = run_edge(
                source,
                watcher,
                detector,
                params,
                start_time,
                max_frames=max_frames,
                on_window=on_window,
                stats=stats,
                face_margin=face_margin,
                on_frame=on_frame,
                stop=stop,
            )
            version = watcher.current.version
    finally:
        rows_left = sender.stop()  # drains for up to outbox.stop_timeout_s
        outbox.close()
    if rows_left:
        log.warning("%d window rows wait in %s for the sink; the next start sends them",
                    rows_left, outbox_path)  # fmt: skip
    return EdgeRun(windows, stats, version, rows_left, server.url if server else None)
