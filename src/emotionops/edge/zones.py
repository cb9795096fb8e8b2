"""Exclusion zones: polygons in frame pixels (e.g. the staff area behind a counter).

A face whose box centre lies inside (or on the edge of) a zone is dropped before tracking:
it is never cropped, classified or counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from emotionops.clean.faces import FaceBox
from emotionops.errors import EmotionOpsError


class ZoneError(EmotionOpsError):
    """An exclusion zone that is not a polygon of at least three (x, y) points."""


class ExclusionZones:
    """Point-in-polygon tests against the configured zones."""

    def __init__(self, polygons: Sequence[Sequence[Sequence[float]]] = ()) -> None:
        self.polygons: list[np.ndarray] = []
        for i, polygon in enumerate(polygons):
            try:
                points = np.asarray(polygon, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise ZoneError(f"exclusion zone {i}: {polygon!r} is not a list of points") from exc
            if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
                raise ZoneError(
                    f"exclusion zone {i}: {polygon!r} must be at least three [x, y] points"
                )
            if not np.all(np.isfinite(points)) or cv2.contourArea(points) <= 0:
                raise ZoneError(f"exclusion zone {i}: {polygon!r} encloses no area")
            self.polygons.append(points.reshape(-1, 1, 2))

    def __bool__(self) -> bool:
        return bool(self.polygons)

    def contains(self, box: FaceBox) -> bool:
        """True when the box's centre lies in any zone."""
        centre = (box.x + box.w / 2, box.y + box.h / 2)
        return any(cv2.pointPolygonTest(p, centre, False) >= 0 for p in self.polygons)
