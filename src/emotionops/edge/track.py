"""Face tracks between detections, and a smoothed emotion per track.

Association is Roboflow's `trackers` ByteTrack (Kalman prediction + two-stage IoU matching):
a maintained implementation, fed only on detection frames with the frame's timestamp, so
its lost-track budget is in seconds whatever the detection interval. Between detection
frames a track keeps its last box; faces move little in a few frames and nothing is
classified there.

Smoothing: each track keeps an exponential moving average of its class probabilities, so
one odd frame does not flip its label; a track whose smoothed top probability is below
`min_confidence` is "uncertain" and counted as such. A track id is a counter local to this
process: it identifies nobody and never leaves the device except as a count per window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emotionops.clean.faces import FaceBox
from emotionops.params import TrackingParams

UNCERTAIN = "uncertain"


@dataclass
class Track:
    """One face followed over frames: its box, and its smoothed emotion once classified."""

    track_id: int
    box: FaceBox
    score: float
    last_classified_frame: int | None = None
    probabilities: np.ndarray | None = field(default=None, repr=False)
    label: str | None = None
    confidence: float = 0.0
    model_version: str | None = None

    def due(self, frame_index: int, classify_every: int) -> bool:
        """Classify on first sight, then at most every `classify_every` frames."""
        last = self.last_classified_frame
        return last is None or frame_index - last >= classify_every

    def observe(
        self,
        probabilities: np.ndarray,
        labels: list[str],
        frame_index: int,
        model_version: str | None,
        smoothing: float,
        min_confidence: float,
    ) -> None:
        """Fold one prediction into the track's average; a new model version starts afresh
        (its classes or calibration may differ)."""
        p = np.asarray(probabilities, dtype=np.float64)
        if (
            self.probabilities is None
            or self.model_version != model_version
            or self.probabilities.shape != p.shape
        ):
            self.probabilities = p
        else:
            self.probabilities = (1.0 - smoothing) * self.probabilities + smoothing * p
        self.model_version = model_version
        self.last_classified_frame = frame_index
        top = int(self.probabilities.argmax())
        self.confidence = float(self.probabilities[top])
        self.label = labels[top] if self.confidence >= min_confidence else UNCERTAIN


class FaceTracker:
    """Keeps `Track`s alive across frames from detections (boxes + scores)."""

    def __init__(self, params: TrackingParams, frame_rate: float = 30.0) -> None:
        from trackers import ByteTrackTracker

        self.params = params
        self._byte = ByteTrackTracker(
            lost_track_buffer=max(0, round(params.lost_s * 30)),  # it counts 30 FPS frames
            frame_rate=frame_rate,
            track_activation_threshold=params.activation_score,
            high_conf_det_threshold=params.activation_score,
            minimum_consecutive_frames=params.min_hits,
            minimum_iou_threshold=params.min_iou,
        )
        self.tracks: dict[int, Track] = {}
        self.ids_seen = 0

    def update(self, boxes: list[FaceBox], scores: list[float], timestamp_s: float) -> list[Track]:
        """Match this frame's detections to tracks; returns the confirmed tracks in view.

        A detection not yet confirmed (ByteTrack wants `min_hits` consecutive sightings,
        which filters one-frame false positives) gets no track and is not classified.
        """
        import supervision as sv

        if boxes:
            xyxy = np.array([[b.x, b.y, b.x + b.w, b.y + b.h] for b in boxes], dtype=np.float32)
            detections = sv.Detections(xyxy=xyxy, confidence=np.asarray(scores, np.float32))
        else:
            detections = sv.Detections.empty()
        tracked = self._byte.update(detections, timestamp=timestamp_s)
        in_view: list[Track] = []
        for xyxy, score, track_id in zip(
            tracked.xyxy, _confidences(tracked), tracked.tracker_id, strict=True
        ):
            if track_id < 0:
                continue
            x0, y0, x1, y1 = (round(float(v)) for v in xyxy)
            box = FaceBox(x0, y0, max(1, x1 - x0), max(1, y1 - y0))
            track = self.tracks.get(int(track_id))
            if track is None:
                track = self.tracks[int(track_id)] = Track(int(track_id), box, float(score))
                self.ids_seen += 1
            else:
                track.box, track.score = box, float(score)
            in_view.append(track)
        alive = {t.tracker_id for t in self._byte.tracks if t.tracker_id >= 0}
        for track_id in [i for i in self.tracks if i not in alive]:
            del self.tracks[track_id]  # lost for good: forget its state (and its emotion)
        return in_view


def _confidences(detections: object) -> np.ndarray:
    confidence = getattr(detections, "confidence", None)
    n = len(detections)  # type: ignore[arg-type]
    return np.ones(n, dtype=np.float32) if confidence is None else np.asarray(confidence)
