"""Aggregate per-face predictions into per-window counts: the only thing the edge emits.

Privacy by design: a window row carries a label, a count and a mean confidence, never a
frame, a crop, a box or an embedding, so no individual can be re-identified from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class EmotionWindow:
    """Faces seen with one label in one time window by one camera (with one model version).

    `count` is the number of distinct tracked faces that held `label` in the window (a person
    standing in view is one face, not one per frame); `observations` the labelled face-frames
    behind it; `distinct_tracks` every face tracked in the window under that model version
    (all labels, "uncertain" included), so shares per window need no second query. The key
    is (camera_id, window_start, label, model_version): a hot swap never overwrites counts.
    """

    camera_id: str
    window_start: datetime
    window_seconds: float
    label: str
    count: int
    mean_confidence: float
    model_version: str | None
    observations: int = 0
    distinct_tracks: int = 0


def as_utc(moment: datetime) -> datetime:
    """Aware UTC datetime; a naive one is taken to be UTC already (the pipeline's convention)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class WindowAggregator:
    """Counts tracked faces per (label, model version) in fixed windows from `start_time`.

    Timestamps are seconds since `start_time`. Window k covers [k*w, (k+1)*w). A window is
    emitted as soon as a later timestamp arrives (via `observe` or `advance`), so a live
    loop ships rows without waiting for the stream to end. A track counts once per window
    and model version, under the label it held most often there (ties: the higher summed
    confidence), so a person in view for the whole window is one face, not one per frame;
    rows are split by model version so a hot swap mid-window stays attributable.
    """

    def __init__(self, camera_id: str, window_seconds: float, start_time: datetime) -> None:
        if not (window_seconds > 0 and math.isfinite(window_seconds)):
            raise ValueError(f"window_seconds must be a positive number, got {window_seconds}")
        self.camera_id = camera_id
        self.window_seconds = float(window_seconds)
        self.start_time = as_utc(start_time)
        self._index: int | None = None
        # (model_version, track_id) -> label -> [observations, confidence sum]
        self._acc: dict[tuple[str | None, int], dict[str, list[float]]] = {}

    def window_index(self, timestamp_s: float) -> int:
        return math.floor(timestamp_s / self.window_seconds)

    def advance(self, timestamp_s: float) -> list[EmotionWindow]:
        """Close every window that ends at or before `timestamp_s`; returns their rows."""
        index = self.window_index(timestamp_s)
        if self._index is None:
            self._index = index
            return []
        if index <= self._index:  # same window (or a clock step back: keep counting here)
            return []
        rows = self._rows()
        self._index = index
        self._acc = {}
        return rows

    def observe(
        self,
        timestamp_s: float,
        track_id: int,
        label: str,
        confidence: float,
        model_version: str | None = None,
    ) -> list[EmotionWindow]:
        """Record one labelled sighting of a track; returns rows of windows it completed."""
        rows = self.advance(timestamp_s)
        labels = self._acc.setdefault((model_version, int(track_id)), {})
        slot = labels.setdefault(label, [0, 0.0])
        slot[0] += 1
        slot[1] += float(confidence)
        return rows

    def flush(self) -> list[EmotionWindow]:
        """Rows of the open window (end of stream); windows with no faces give no rows."""
        rows = self._rows()
        self._acc = {}
        return rows

    def _rows(self) -> list[EmotionWindow]:
        if self._index is None or not self._acc:
            return []
        start = self.start_time + timedelta(seconds=self._index * self.window_seconds)
        # (version, label) -> [tracks, observations, confidence sum]
        per_label: dict[tuple[str | None, str], list[float]] = {}
        tracks: dict[str | None, int] = {}
        for (version, _track), labels in self._acc.items():
            label, (n, conf_sum) = max(labels.items(), key=lambda kv: (kv[1][0], kv[1][1]))
            slot = per_label.setdefault((version, label), [0, 0, 0.0])
            slot[0] += 1
            slot[1] += n
            slot[2] += conf_sum
            tracks[version] = tracks.get(version, 0) + 1
        return [
            EmotionWindow(
                camera_id=self.camera_id,
                window_start=start,
                window_seconds=self.window_seconds,
                label=label,
                count=int(count),
                mean_confidence=conf_sum / n,
                model_version=version,
                observations=int(n),
                distinct_tracks=tracks[version],
            )
            for (version, label), (count, n, conf_sum) in sorted(
                per_label.items(), key=lambda kv: (kv[0][1], kv[0][0] or "")
            )
        ]
