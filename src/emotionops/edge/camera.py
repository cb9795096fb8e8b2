"""Frame sources for the edge loop: a webcam index, an RTSP/HTTP stream, or a video file.

Files give deterministic timestamps (frame_index / fps), so re-running on the same file gives
the same windows; an unreadable frame is skipped and counted, and only a long run of them
(or the end of the file) ends the stream. Live sources are read by a background thread that
keeps only the newest frame (the loop never lags behind the camera; frames it had no time
for are counted as dropped); a camera that disconnects or stalls is reopened with capped
exponential backoff for as long as the service runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emotionops.errors import EmotionOpsError

log = logging.getLogger(__name__)

LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class CameraError(EmotionOpsError):
    """A camera, stream or video file could not be opened."""


@dataclass
class SourceStats:
    """Fault counters of a source (no image data), read by the metrics endpoint."""

    frames: int = 0
    bad_frames: int = 0  # unreadable or empty frames, skipped
    dropped_frames: int = 0  # live frames replaced by a newer one before the loop took them
    reconnects: int = 0  # successful reopenings
    reconnect_attempts: int = 0
    stalls: int = 0  # live source silent for longer than stall_s


def _usable(frame: np.ndarray | None) -> bool:
    return frame is not None and frame.ndim in (2, 3) and frame.size > 0


class FrameSource:
    """Iterates `(timestamp_s, frame)`; use as a context manager to release the device."""

    source: str
    is_live: bool
    fps: float

    def __init__(self) -> None:
        self.stats = SourceStats()

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileSource(FrameSource):
    """A video file read once, frame by frame."""

    is_live = False

    def __init__(self, path: Path, default_fps: float = 10.0, max_bad_frames: int = 250) -> None:
        super().__init__()
        self.source = str(path)
        self.max_bad_frames = max_bad_frames
        if not path.is_file():
            raise CameraError(f"video file not found: {path}")
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraError(f"cannot open video file {path} (not a video OpenCV can decode?)")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        # Some containers report 0 or NaN; fall back to the configured rate.
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else float(default_fps)
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if count and np.isfinite(count) and count > 0 else None

    def _at_end(self, index: int) -> bool:
        return self.frame_count is not None and index >= self.frame_count

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        index = 0  # position in the file: a skipped frame still takes its time slot
        bad_in_a_row = 0
        while not self._at_end(index):
            try:
                ok, frame = self._cap.read()
            except cv2.error as exc:
                log.debug("%s: frame %d unreadable: %s", self.source, index, exc)
                ok, frame = False, None
            if ok and _usable(frame):
                bad_in_a_row = 0
                self.stats.frames += 1
                yield index / self.fps, frame
            else:
                if self.frame_count is None and not ok:
                    return  # no frame count to tell a bad frame from the end: stop here
                bad_in_a_row += 1
                self.stats.bad_frames += 1
                if bad_in_a_row >= self.max_bad_frames:
                    log.warning(
                        "%s: %d unreadable frames in a row at frame %d; ending the stream",
                        self.source,
                        bad_in_a_row,
                        index,
                    )
                    return
            index += 1

    def close(self) -> None:
        self._cap.release()


Opener = Callable[[str], "cv2.VideoCapture | None"]


def open_capture(source: str, timeout_s: float = 5.0) -> cv2.VideoCapture | None:
    """An opened capture for a webcam index or stream URL, or None."""
    if source.isdigit():
        cap = cv2.VideoCapture(int(source))
    else:
        ms = int(timeout_s * 1000)
        cap = cv2.VideoCapture(
            source,
            cv2.CAP_FFMPEG,
            [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms],
        )
    if cap.isOpened():
        return cap
    cap.release()
    return None


class LiveSource(FrameSource):
    """A webcam or network stream, read in a background thread that keeps the newest frame.

    Disconnects (read fails) and stalls (no frame for `stall_s`) lead to reopening with
    delays `reconnect_s`, 2x, 4x ... capped at `reconnect_max_s`, forever: a camera box must
    recover from a camera reboot or a Wi-Fi outage on its own. A reader stuck inside a
    blocking read is abandoned (its capture is released when the read returns) and a fresh
    one started, because a capture cannot safely be released from another thread.
    """

    is_live = True

    def __init__(
        self,
        source: str,
        reconnect_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        stall_s: float = 10.0,
        fps: float = 25.0,
        opener: Opener = open_capture,
    ) -> None:
        super().__init__()
        self.source = source
        self.reconnect_s = reconnect_s
        self.reconnect_max_s = reconnect_max_s
        self.stall_s = stall_s
        self._opener = opener
        cap = opener(source)
        if cap is None:  # at start, a source that never opens is a configuration error
            raise CameraError(f"cannot open camera/stream {source!r}")
        reported = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(reported) if reported and 0 < reported < 1000 else float(fps)
        self._cond = threading.Condition()
        self._latest: np.ndarray | None = None
        self._generation = 0
        self._closed = threading.Event()
        self._start_reader(cap)

    def _start_reader(self, cap: cv2.VideoCapture | None) -> None:
        with self._cond:
            self._generation += 1
            generation = self._generation
        threading.Thread(
            target=self._read_loop, args=(cap, generation), name="camera-reader", daemon=True
        ).start()

    def _current(self, generation: int) -> bool:
        return generation == self._generation and not self._closed.is_set()

    def _reopen(self, generation: int) -> cv2.VideoCapture | None:
        delay = self.reconnect_s
        while self._current(generation):
            self.stats.reconnect_attempts += 1
            log.warning("%s: stream lost; reopening in %.2fs", self.source, delay)
            if self._closed.wait(delay):
                return None
            cap = self._opener(self.source)
            if cap is not None:
                self.stats.reconnects += 1
                log.info("%s: reconnected", self.source)
                return cap
            delay = min(delay * 2, self.reconnect_max_s)
        return None

    def _read_loop(self, cap: cv2.VideoCapture | None, generation: int) -> None:
        try:
            while self._current(generation):
                if cap is None:
                    cap = self._reopen(generation)
                    continue
                ok, frame = cap.read()
                if not self._current(generation):
                    break
                if not ok:
                    cap.release()
                    cap = None
                    continue
                if not _usable(frame):
                    self.stats.bad_frames += 1
                    continue
                with self._cond:
                    if self._latest is not None:
                        self.stats.dropped_frames += 1
                    self._latest = frame
                    self._cond.notify()
        finally:
            if cap is not None:
                cap.release()

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        start = time.monotonic()
        while not self._closed.is_set():
            with self._cond:
                got = self._cond.wait_for(
                    lambda: self._latest is not None or self._closed.is_set(), self.stall_s
                )
                frame, self._latest = self._latest, None
            if frame is not None:
                self.stats.frames += 1
                yield time.monotonic() - start, frame
            elif not got:
                self.stats.stalls += 1
                log.warning("%s: no frame for %.1fs; reopening", self.source, self.stall_s)
                self._start_reader(None)  # the old reader exits when its read returns

    def close(self) -> None:
        self._closed.set()
        with self._cond:
            self._cond.notify_all()


def open_source(
    source: str,
    default_fps: float = 10.0,
    reconnect_s: float = 0.5,
    reconnect_max_s: float = 30.0,
    stall_s: float = 10.0,
    max_bad_frames: int = 250,
) -> FrameSource:
    """Open a webcam index ("0"), a stream URL (rtsp://, http://...) or a video file path.

    A source that cannot be opened at all fails at once (a configuration error should not
    hide behind retries); a live source that drops later is reopened with backoff.
    """
    source = str(source).strip()
    if not source:
        raise CameraError("empty camera source: give a webcam index, a stream URL or a file")
    if source.isdigit() or source.lower().startswith(LIVE_SCHEMES):
        return LiveSource(
            source, reconnect_s=reconnect_s, reconnect_max_s=reconnect_max_s, stall_s=stall_s
        )
    return FileSource(Path(source), default_fps=default_fps, max_bad_frames=max_bad_frames)
