"""Face detection and canonical face crops, shared by image cleanup and the edge service.

The default detector is OpenCV's Haar cascade: it ships inside `opencv-python-headless<5`
(no download at run time) and is fast on a CPU. Detection runs on a padded copy of the
image so that tight crops (FER2013-style, where the face fills the frame) are found too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


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


class HaarFaceDetector:
    """Frontal-face Haar cascade with padding for tight crops."""

    def __init__(
        self,
        min_face_side: int = 24,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        pad_fraction: float = 0.25,
    ) -> None:
        self.min_face_side = min_face_side
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.pad_fraction = pad_fraction
        self._cascade = _cascade("haarcascade_frontalface_default.xml")

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
