"""The edge loop: frames -> faces (every k-th frame) -> tracks -> smoothed emotions -> windows.

Cost is where the detector is: it runs on every `detect_every`-th frame only (on a
downscaled copy, inside the detector); ByteTrack links its boxes across detection frames;
each confirmed track is classified at most every `classify_every` frames, all due tracks of
a frame in one batched TFLite call, and immediately after a model swap.

PRIVACY BY DESIGN: `run_edge` returns aggregate counts only; frames and crops live in local
variables for one iteration and are never written, logged or returned. `on_frame` (the
`--display` window) receives the frame with every face blurred.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import cv2
import numpy as np

from emotionops.clean.faces import crop_face
from emotionops.edge.camera import FrameSource, SourceStats, open_source
from emotionops.edge.classifier import TfliteEmotionClassifier
from emotionops.edge.detect import FaceDetector
from emotionops.edge.model import EdgeError
from emotionops.edge.report import EmotionWindow, WindowAggregator
from emotionops.edge.track import FaceTracker, Track
from emotionops.edge.zones import ExclusionZones
from emotionops.params import EdgeParams

ClassifierProvider = TfliteEmotionClassifier | Callable[[], TfliteEmotionClassifier]


@dataclass
class EdgeStats:
    """Counters of one run (no personal data): for logs, metrics and tests."""

    frames_read: int = 0
    frames_detected: int = 0  # frames the detector ran on
    faces_detected: int = 0
    faces_excluded: int = 0
    faces_classified: int = 0  # crops sent to the classifier
    tracks_in_view: int = 0  # confirmed tracks on the last detection frame
    tracks_seen: int = 0  # distinct tracks since start
    labelled_tracks_in_view: int = 0
    windows_emitted: int = 0
    seconds: float = 0.0
    last_frame_s: float = 0.0  # processing time of the newest frame
    last_frame_at: float = 0.0  # time.monotonic() when it arrived
    model_versions: set[str | None] = field(default_factory=set)
    source: SourceStats = field(default_factory=SourceStats)


FrameHook = Callable[[np.ndarray, list[Track], float, int | None], None]


def run_edge(
    source: str | FrameSource,
    classifier_provider: ClassifierProvider,
    detector: FaceDetector,
    params: EdgeParams,
    start_time: datetime,
    max_frames: int | None = None,
    on_window: Callable[[EmotionWindow], None] | None = None,
    stats: EdgeStats | None = None,
    face_margin: float = 0.15,
    on_frame: FrameHook | None = None,
    stop: threading.Event | None = None,
) -> list[EmotionWindow]:
    """Read frames until the source ends, `max_frames` or `stop`; return per-window counts.

    `start_time` anchors timestamps (seconds since the start of the stream) to UTC, so a
    file re-run with the same `start_time` gives identical windows. `on_window` receives
    each window as soon as it closes (the outbox); all windows are also returned.
    `on_frame(frame, tracks, seconds, faces)` runs after each frame (metrics, display).
    """
    zones = ExclusionZones(params.exclusion_zones)
    if max_frames is not None and max_frames < 1:
        raise EdgeError(
            f"max_frames must be at least 1 (or None for the whole stream): {max_frames}"
        )
    stats = stats if stats is not None else EdgeStats()
    provider: Callable[[], TfliteEmotionClassifier] = (
        (lambda: classifier_provider)
        if isinstance(classifier_provider, TfliteEmotionClassifier)
        else classifier_provider
    )
    aggregator = WindowAggregator(params.camera_id, params.window_seconds, start_time)
    windows: list[EmotionWindow] = []

    def emit(rows: list[EmotionWindow]) -> None:
        for row in rows:
            windows.append(row)
            stats.windows_emitted += 1
            if on_window is not None:
                on_window(row)

    frames = (
        open_source(
            source,
            default_fps=params.fps,
            reconnect_s=params.reconnect_s,
            reconnect_max_s=params.reconnect_max_s,
            stall_s=params.stall_s,
            max_bad_frames=params.max_bad_frames,
        )
        if isinstance(source, str)
        else source
    )
    stats.source = frames.stats
    tracker = FaceTracker(params.tracking, frame_rate=frames.fps / params.detect_every)
    tracks: list[Track] = []
    began = time.perf_counter()
    try:
        for timestamp_s, frame in frames:
            frame_began = time.perf_counter()
            stats.last_frame_at = time.monotonic()
            index = stats.frames_read
            stats.frames_read += 1
            emit(aggregator.advance(timestamp_s))
            faces: int | None = None  # None: the detector skipped this frame
            if index % params.detect_every == 0:
                tracks, faces = _detect_and_track(
                    frame, detector, zones, tracker, stats, timestamp_s
                )
                _classify_due(frame, tracks, provider(), index, params, face_margin, stats)
                for track in tracks:
                    if track.label is not None:
                        emit(
                            aggregator.observe(
                                timestamp_s,
                                track.track_id,
                                track.label,
                                track.confidence,
                                track.model_version,
                            )
                        )
                stats.labelled_tracks_in_view = sum(t.label is not None for t in tracks)
            stats.last_frame_s = time.perf_counter() - frame_began
            if on_frame is not None:
                on_frame(frame, tracks, stats.last_frame_s, faces)
            if (max_frames is not None and stats.frames_read >= max_frames) or (
                stop is not None and stop.is_set()
            ):
                break
        emit(aggregator.flush())
    finally:
        if isinstance(source, str):
            frames.close()
        stats.seconds = time.perf_counter() - began
    return windows


def _detect_and_track(
    frame: np.ndarray,
    detector: FaceDetector,
    zones: ExclusionZones,
    tracker: FaceTracker,
    stats: EdgeStats,
    timestamp_s: float,
) -> tuple[list[Track], int]:
    """Confirmed tracks in view after this frame's detections (zones removed first)."""
    found = detector.detect(frame)
    stats.frames_detected += 1
    stats.faces_detected += len(found)
    kept = [d for d in found if not zones.contains(d.box)] if zones else found
    stats.faces_excluded += len(found) - len(kept)
    tracks = tracker.update([d.box for d in kept], [d.score for d in kept], timestamp_s)
    stats.tracks_in_view = len(tracks)
    stats.tracks_seen = tracker.ids_seen
    return tracks, len(kept)


def _classify_due(
    frame: np.ndarray,
    tracks: list[Track],
    classifier: TfliteEmotionClassifier,
    index: int,
    params: EdgeParams,
    face_margin: float,
    stats: EdgeStats,
) -> None:
    """One batched call for every track due (or labelled by an older model version)."""
    due = [
        t
        for t in tracks
        if t.due(index, params.classify_every) or t.model_version != classifier.version
    ]
    if not due:
        return
    size = classifier.image_size
    crops = np.stack([crop_face(frame, t.box, size, face_margin) for t in due])
    probabilities = classifier.predict_proba(crops)
    del crops  # privacy: crops never outlive the frame
    stats.faces_classified += len(due)
    stats.model_versions.add(classifier.version)
    for track, p in zip(due, probabilities, strict=True):
        track.observe(
            p, classifier.labels, index, classifier.version, params.smoothing, params.min_confidence
        )


def blurred_view(frame: np.ndarray, tracks: list[Track]) -> np.ndarray:
    """A copy of `frame` with every tracked face blurred beyond recognition, and its label."""
    view = frame.copy()
    h, w = view.shape[:2]
    for t in tracks:
        x0, y0 = max(0, t.box.x), max(0, t.box.y)
        x1, y1 = min(w, t.box.x + t.box.w), min(h, t.box.y + t.box.h)
        if x1 <= x0 or y1 <= y0:
            continue
        face = view[y0:y1, x0:x1]
        small = cv2.resize(face, (6, 6), interpolation=cv2.INTER_AREA)  # pixelate: no detail left
        view[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        cv2.rectangle(view, (x0, y0), (x1, y1), (0, 200, 255), 2)
        text = f"#{t.track_id} {t.label or '...'} {t.confidence:.2f}"
        cv2.putText(view, text, (x0, max(12, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 200, 255), 1, cv2.LINE_AA)  # fmt: skip
    return view
