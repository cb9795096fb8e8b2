"""A synthetic "camera" video for the demo when the user gives none.

One face at a time on a plain 320x240 background, cycling through the labels every ~2 s,
so the dashboard shows every emotion moving. Deterministic for a seed: the same inputs give
the same frames (and so the same windows downstream).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from emotionops.errors import EmotionOpsError
from emotionops.files import atomic_path

log = logging.getLogger(__name__)

FRAME_W, FRAME_H = 320, 240
FACE_SIDE = 160
SEGMENT_S = 2.0


class DemoVideoError(EmotionOpsError):
    """The demo video could not be made (no faces, unreadable image, codec missing)."""


def _load_face(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DemoVideoError(f"cannot read face image {path}")
    h, w = image.shape
    scale = FACE_SIDE / max(h, w)
    interp = cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
    return cv2.resize(
        image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp
    )


def demo_schedule(
    faces_by_label: dict[str, list[Path]], seconds: float, fps: float, seed: int
) -> list[tuple[str, Path]]:
    """(label, face image) shown in each ~2 s segment, in order; deterministic for a seed."""
    labels = [label for label, paths in faces_by_label.items() if paths]
    if not labels:
        raise DemoVideoError("no face images given for the demo video")
    empty = [label for label, paths in faces_by_label.items() if not paths]
    if empty:
        log.warning("demo video: no face images for %s; skipping those labels", empty)
    rng = np.random.default_rng(seed)
    segment_frames = max(1, round(SEGMENT_S * fps))
    n_segments = -(-max(1, round(seconds * fps)) // segment_frames)
    schedule = []
    for k in range(n_segments):
        label = labels[k % len(labels)]
        paths = sorted(Path(p) for p in faces_by_label[label])
        schedule.append((label, paths[int(rng.integers(len(paths)))]))
    return schedule


def make_demo_video(
    out_path: Path,
    faces_by_label: dict[str, list[Path]],
    seconds: float,
    fps: float,
    seed: int,
) -> Path:
    """Write an MJPG .avi and check it reads back with the expected frame count."""
    if seconds <= 0 or fps <= 0:
        raise DemoVideoError(f"seconds and fps must be positive, got {seconds} and {fps}")
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".avi":
        raise DemoVideoError(f"{out_path}: the demo video is MJPG in an .avi container")
    schedule = demo_schedule(faces_by_label, seconds, fps, seed)
    rng = np.random.default_rng(seed + 1)
    n_frames = max(1, round(seconds * fps))
    segment_frames = max(1, round(SEGMENT_S * fps))
    background = int(rng.integers(90, 150))
    faces = {path: _load_face(path) for _, path in schedule}
    # A small per-segment drift keeps the "camera" from being a still image.
    offsets = [(int(rng.integers(-30, 31)), int(rng.integers(-10, 11))) for _ in schedule]

    with atomic_path(out_path, suffix=".avi") as tmp:
        size = (FRAME_W, FRAME_H)
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
        if not writer.isOpened():
            raise DemoVideoError(f"OpenCV cannot write MJPG video to {tmp}")
        try:
            for i in range(n_frames):
                k = i // segment_frames
                face = faces[schedule[k][1]]
                frame = np.full((FRAME_H, FRAME_W), background, dtype=np.uint8)
                fh, fw = face.shape
                x0 = (FRAME_W - fw) // 2 + offsets[k][0]
                y0 = (FRAME_H - fh) // 2 + offsets[k][1]
                x0, y0 = max(0, min(FRAME_W - fw, x0)), max(0, min(FRAME_H - fh, y0))
                frame[y0 : y0 + fh, x0 : x0 + fw] = face
                writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        finally:
            writer.release()

    read_back = count_frames(out_path)
    if read_back != n_frames:
        raise DemoVideoError(f"{out_path}: wrote {n_frames} frames but {read_back} read back")
    log.info(
        "demo video %s: %d frames at %g fps, labels %s",
        out_path,
        read_back,
        fps,
        [label for label, _ in schedule],
    )
    return out_path


def count_frames(path: Path) -> int:
    """Frames that actually decode (container metadata can lie about the count)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DemoVideoError(f"cannot open {path} with OpenCV")
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    return n
