"""Face detection and canonical face crops, shared by image cleanup and the edge service.

The default detector is OpenCV's Haar cascade: it ships inside `opencv-python-headless<5`
(no download at run time) and is fast on a CPU. Detection runs on a padded copy of the
image so that tight crops (FER2013-style, where the face fills the frame) are found too.
Other detectors (`make_detector`): the `alt`/`alt2` cascades, and OpenCV's YuNet CNN when
the user supplies its ONNX file (no package ships it and nothing is downloaded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from emotionops.errors import EmotionOpsError

#: Detector names accepted by `make_detector` (params.yaml `images.detector`).
HAAR_CASCADES = {
    "haar_default": "haarcascade_frontalface_default.xml",
    "haar_alt": "haarcascade_frontalface_alt.xml",
    "haar_alt2": "haarcascade_frontalface_alt2.xml",
}
DETECTORS = (*HAAR_CASCADES, "yunet")


class FaceDetectorError(EmotionOpsError):
    """Unknown detector name, or a detector model file that is missing or unreadable."""


@dataclass(frozen=True)
class FaceBox:
    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h


@lru_cache(maxsize=4)
def _cascade(name: str) -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + name
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"OpenCV Haar cascade not found at {path} (needs opencv-python<5)")
    return cascade


def to_gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


class FaceDetector(Protocol):
    def detect(self, image: np.ndarray) -> list[FaceBox]: ...


class HaarFaceDetector:
    """Frontal-face Haar cascade with padding for tight crops."""

    def __init__(
        self,
        min_face_side: int = 24,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        pad_fraction: float = 0.25,
        cascade: str = "haarcascade_frontalface_default.xml",
    ) -> None:
        self.min_face_side = min_face_side
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.pad_fraction = pad_fraction
        self._cascade = _cascade(cascade)

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in image coordinates, largest first."""
        gray = to_gray(image)
        h, w = gray.shape
        pad = round(max(h, w) * self.pad_fraction)
        # Tiny images (FER-style 48x48) are upscaled so the cascade's 24px window fits a face.
        scale = 1.0 if min(h, w) >= 96 else 96.0 / min(h, w)
        work = cv2.resize(gray, None, fx=scale, fy=scale) if scale != 1.0 else gray
        p = round(pad * scale)
        work = cv2.copyMakeBorder(work, p, p, p, p, cv2.BORDER_REPLICATE)
        found = self._cascade.detectMultiScale(
            work,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(int(self.min_face_side * scale), int(self.min_face_side * scale)),
        )
        boxes = []
        for x, y, bw, bh in found:
            x0 = max(0, round((x - p) / scale))
            y0 = max(0, round((y - p) / scale))
            x1 = min(w, round((x + bw - p) / scale))
            y1 = min(h, round((y + bh - p) / scale))
            if x1 > x0 and y1 > y0:
                boxes.append(FaceBox(x0, y0, x1 - x0, y1 - y0))
        return sorted(boxes, key=lambda b: b.area, reverse=True)


def crop_face(image: np.ndarray, box: FaceBox, size: int, margin: float) -> np.ndarray:
    """Square grayscale crop around `box` with `margin` on each side, resized to `size`."""
    gray = to_gray(image)
    side = round(max(box.w, box.h) * (1 + 2 * margin))
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    # Pad with edge pixels where the square leaves the image instead of shifting the face.
    padded = cv2.copyMakeBorder(gray, side, side, side, side, cv2.BORDER_REPLICATE)
    crop = padded[y0 + side : y0 + 2 * side, x0 + side : x0 + 2 * side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


class YuNetFaceDetector:
    """OpenCV's YuNet face detector (`cv2.FaceDetectorYN`) from a user-supplied ONNX file,
    e.g. face_detection_yunet_2023mar.onnx from the OpenCV model zoo."""

    def __init__(self, model_path: str | Path, min_face_side: int = 24, score: float = 0.8):
        path = Path(model_path) if model_path else None
        if path is None or not path.is_file():
            raise FaceDetectorError(
                f"YuNet model file not found: {model_path!r}; set images.detector_model to a "
                "local face_detection_yunet_*.onnx file (it is never downloaded)"
            )
        try:
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score)
        except cv2.error as exc:
            raise FaceDetectorError(f"cannot load YuNet model {path}: {exc}") from exc
        self.min_face_side = min_face_side

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        bgr = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        h, w = bgr.shape[:2]
        self._net.setInputSize((w, h))
        _, found = self._net.detect(bgr)
        boxes = []
        for row in found if found is not None else []:
            x0, y0 = max(0, round(row[0])), max(0, round(row[1]))
            x1, y1 = min(w, round(row[0] + row[2])), min(h, round(row[1] + row[3]))
            if min(x1 - x0, y1 - y0) >= self.min_face_side:
                boxes.append(FaceBox(x0, y0, x1 - x0, y1 - y0))
        return sorted(boxes, key=lambda b: b.area, reverse=True)


def make_detector(name: str, min_face_side: int = 24, model_path: str = "") -> FaceDetector:
    """The detector named in params (`haar_default`, `haar_alt`, `haar_alt2`, `yunet`)."""
    if name in HAAR_CASCADES:
        return HaarFaceDetector(min_face_side=min_face_side, cascade=HAAR_CASCADES[name])
    if name == "yunet":
        return YuNetFaceDetector(model_path, min_face_side=min_face_side)
    raise FaceDetectorError(f"unknown face detector {name!r}; known: {list(DETECTORS)}")


def eye_angle(gray: np.ndarray, box: FaceBox) -> float | None:
    """Degrees to rotate the image (counter-clockwise) so the eyes are level, from the two
    largest eyes found in the face's upper half; None when two eyes are not found."""
    top = gray[box.y : box.y + box.h // 2 + box.h // 10, box.x : box.x + box.w]
    if min(top.shape[:2]) < 12:
        return None
    min_eye = max(6, box.w // 10)
    eyes = _cascade("haarcascade_eye.xml").detectMultiScale(
        top, scaleFactor=1.1, minNeighbors=5, minSize=(min_eye, min_eye)
    )
    if len(eyes) < 2:
        return None
    two = sorted(sorted(eyes, key=lambda e: e[2] * e[3], reverse=True)[:2], key=lambda e: e[0])
    (lx, ly, lw, lh), (rx, ry, rw, rh) = two
    dx = (rx + rw / 2) - (lx + lw / 2)
    dy = (ry + rh / 2) - (ly + lh / 2)
    if dx < box.w * 0.15:  # both detections on the same eye
        return None
    angle = math.degrees(math.atan2(dy, dx))
    return angle if abs(angle) <= 30 else None


def align_face(image: np.ndarray, box: FaceBox) -> tuple[np.ndarray, float]:
    """The image rotated about the face centre so that the eyes are level, and the angle
    used (0.0 when the eyes were not found: the image is returned unchanged)."""
    gray = to_gray(image)
    angle = eye_angle(gray, box)
    if angle is None or abs(angle) < 1.0:
        return gray, 0.0
    centre = (box.x + box.w / 2, box.y + box.h / 2)
    matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
    h, w = gray.shape
    rotated = cv2.warpAffine(gray, matrix, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    return rotated, angle
