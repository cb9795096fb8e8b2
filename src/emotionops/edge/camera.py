"""Frame sources for the edge loop: a webcam index, an RTSP/HTTP stream, or a video file.

Files give deterministic timestamps (frame_index / fps) so re-running on the same file gives
the same windows; live sources use monotonic time since the first frame request and are
reopened with exponential backoff when they drop (cameras reboot, Wi-Fi flaps).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from emotionops.errors import EmotionOpsError

log = logging.getLogger(__name__)

LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class CameraError(EmotionOpsError):
    """A camera, stream or video file could not be opened or was lost for good."""


class FrameSource:
    """Iterates `(timestamp_s, frame)`; use as a context manager to release the device."""

    source: str
    is_live: bool

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileSource(FrameSource):
    """A video file read once; a truncated or corrupt tail ends the stream cleanly."""

    is_live = False

    def __init__(self, path: Path, default_fps: float = 10.0) -> None:
        self.source = str(path)
        if not path.is_file():
            raise CameraError(f"video file not found: {path}")
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraError(f"cannot open video file {path} (not a video OpenCV can decode?)")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        # Some containers report 0 or NaN; fall back to the configured rate.
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else float(default_fps)

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        index = 0
        while True:
            try:
                ok, frame = self._cap.read()
            except cv2.error as exc:  # corrupt data mid-file: stop, don't crash the service
                log.warning(
                    "%s: decode error after %d frames, stopping: %s", self.source, index, exc
                )
                return
            if not ok or frame is None:
                return
            yield index / self.fps, frame
            index += 1

    def close(self) -> None:
        self._cap.release()


class LiveSource(FrameSource):
    """A webcam or network stream; reopened with backoff when it stops delivering frames."""

    is_live = True

    def __init__(
        self,
        source: str,
        max_reconnects: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
        open_timeout_s: float = 5.0,
    ) -> None:
        self.source = source
        self.max_reconnects = max_reconnects
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.open_timeout_s = open_timeout_s
        self.reconnects = 0  # successful reopenings, for monitoring
        self._cap = self._open()
        if self._cap is None:
            raise CameraError(f"cannot open camera/stream {source!r}")

    def _open(self) -> cv2.VideoCapture | None:
        if self.source.isdigit():
            cap = cv2.VideoCapture(int(self.source))
        else:
            ms = int(self.open_timeout_s * 1000)
            cap = cv2.VideoCapture(
                self.source,
                cv2.CAP_FFMPEG,
                [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms],
            )
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _reopen(self) -> None:
        self._cap.release()
        delay = self.backoff_s
        for attempt in range(1, self.max_reconnects + 1):
            log.warning(
                "%s: stream lost; reconnect attempt %d/%d in %.2fs",
                self.source,
                attempt,
                self.max_reconnects,
                delay,
            )
            time.sleep(delay)  # backoff between reconnects to a real device, not test sync
            cap = self._open()
            if cap is not None:
                self._cap = cap
                self.reconnects += 1
                log.info("%s: reconnected", self.source)
                return
            delay = min(delay * 2, self.backoff_max_s)
        raise CameraError(
            f"camera/stream {self.source!r} lost and not back after "
            f"{self.max_reconnects} reconnect attempts"
        )

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        start = time.monotonic()
        while True:
            ok, frame = self._cap.read()
            if not ok or frame is None:
                self._reopen()
                continue
            yield time.monotonic() - start, frame

    def close(self) -> None:
        self._cap.release()


def open_source(
    source: str,
    default_fps: float = 10.0,
    max_reconnects: int = 5,
    backoff_s: float = 0.5,
) -> FrameSource:
    """Open a webcam index ("0"), a stream URL (rtsp://, http://...) or a video file path.

    A source that cannot be opened at all fails at once (a configuration error should not
    hide behind retries); a live source that drops later is retried with backoff.
    """
    source = str(source).strip()
    if not source:
        raise CameraError("empty camera source: give a webcam index, a stream URL or a file")
    if source.isdigit() or source.lower().startswith(LIVE_SCHEMES):
        return LiveSource(source, max_reconnects=max_reconnects, backoff_s=backoff_s)
    return FileSource(Path(source), default_fps=default_fps)
