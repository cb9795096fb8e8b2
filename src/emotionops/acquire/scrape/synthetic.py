"""Labelled cartoon faces drawn at run time.

WHY: the demo and the tests need a face set with known labels that works offline and
carries no personal data. Each face is drawn so that OpenCV's Haar cascade (the pipeline's
detector) finds it, and so that the mouth/brow/eye shapes make the labels learnable.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from emotionops.errors import EmotionOpsError
from emotionops.files import atomic_write

#: Labels this generator knows how to draw (the FER2013 classes).
DRAWABLE_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


class SyntheticError(EmotionOpsError, ValueError):
    """Unknown label or bad size/count for the synthetic face generator."""


def _pt(x: float, y: float) -> tuple[int, int]:
    return round(x), round(y)


def _draw_brows(img: np.ndarray, label: str, cx: float, w: float, h: float, by: float, v: float):
    thick = max(2, round(w * 0.04))
    for sx in (-1, 1):
        inner_x, outer_x = cx + sx * w * 0.08, cx + sx * w * 0.36
        inner_y = outer_y = by
        if label == "angry":  # V-shape: inner ends pulled down
            inner_y, outer_y = by + h * 0.06, by - h * 0.02
        elif label in ("sad", "fear"):  # inner ends raised
            inner_y, outer_y = by - h * 0.05, by + h * 0.02
        elif label == "disgust" and sx == 1:  # one lowered brow
            inner_y, outer_y = by + h * 0.04, by + h * 0.03
        cv2.line(img, _pt(inner_x, inner_y), _pt(outer_x, outer_y), v, thick, cv2.LINE_AA)


def _draw_mouth(img: np.ndarray, label: str, cx: float, my: float, w: float, h: float, v: float):
    mw = w * 0.22
    thick = max(2, round(w * 0.04))
    if label == "happy":  # smile: lower half of an ellipse
        axes = _pt(mw, h * 0.09)
        cv2.ellipse(img, _pt(cx, my - h * 0.06), axes, 0, 20, 160, v, thick, cv2.LINE_AA)
    elif label == "sad":  # frown: upper half of an ellipse
        axes = _pt(mw, h * 0.07)
        cv2.ellipse(img, _pt(cx, my + h * 0.05), axes, 0, 200, 340, v, thick, cv2.LINE_AA)
    elif label == "surprise":  # open round "O"
        cv2.ellipse(img, _pt(cx, my), _pt(mw * 0.38, h * 0.065), 0, 0, 360, v, -1, cv2.LINE_AA)
    elif label == "neutral":  # straight line
        cv2.line(img, _pt(cx - mw, my), _pt(cx + mw, my), v, thick, cv2.LINE_AA)
    elif label == "angry":  # pressed lips: a thick bar
        p0, p1 = _pt(cx - mw * 0.8, my - h * 0.02), _pt(cx + mw * 0.8, my + h * 0.02)
        cv2.rectangle(img, p0, p1, v, -1, cv2.LINE_AA)
    elif label == "disgust":  # crooked, one corner raised
        pts = np.array(
            [
                [cx - mw, my + h * 0.02],
                [cx - mw * 0.3, my - h * 0.02],
                [cx + mw * 0.3, my + h * 0.01],
                [cx + mw, my - h * 0.05],
            ]
        )
        cv2.polylines(img, [np.round(pts).astype(np.int32)], False, v, thick, cv2.LINE_AA)
    elif label == "fear":  # wide, flat open mouth
        cv2.ellipse(img, _pt(cx, my), _pt(mw * 0.9, h * 0.045), 0, 0, 360, v, -1, cv2.LINE_AA)


def make_face(label: str, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """One grayscale uint8 face (size x size) whose expression encodes `label`."""
    if label not in DRAWABLE_LABELS:
        raise SyntheticError(f"cannot draw label {label!r}; known labels: {list(DRAWABLE_LABELS)}")
    if size < 48:
        raise SyntheticError(f"size must be >= 48 pixels for a detectable face, got {size}")
    s = size / 128.0
    # Strong face/background contrast keeps the Haar cascade reliable.
    bg = rng.uniform(40, 90) if rng.random() < 0.5 else rng.uniform(225, 250)
    skin = rng.uniform(140, 200)
    img = np.full((size, size), bg, np.float32)
    # A background gradient in a random direction, and shoulders below the face: photos of
    # one expression differ in more than the expression. Measured on the demo's 160 faces:
    # the near-duplicate check (perceptual hashes) dropped 46 without this variety, 24 with.
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * np.arange(size)[None, :] + np.sin(angle) * np.arange(size)[:, None]
    img += (ramp - ramp.mean()) / size * rng.uniform(20, 60) * (1 if bg < 128 else -1)

    cx = size / 2 + rng.uniform(-6, 6) * s
    cy = size / 2 + rng.uniform(-6, 6) * s
    w = rng.uniform(70, 84) * s
    h = w * rng.uniform(1.22, 1.32)
    cloth = rng.uniform(0, 255)
    shoulders = _pt(cx + rng.uniform(-10, 10) * s, cy + h * 0.5 + rng.uniform(30, 46) * s)
    cv2.ellipse(img, shoulders, _pt(w * rng.uniform(0.8, 1.1), h * 0.35), 0, 0, 360, cloth, -1)
    cv2.ellipse(img, _pt(cx, cy), _pt(w / 2, h / 2), 0, 0, 360, skin, -1, cv2.LINE_AA)

    dark = max(skin - 120, 5)
    eye_y = cy - h * 0.12
    eye_ax, eye_ay = int(w // 4) // 2, int(w // 7) // 2
    if label == "fear":
        eye_ay = round(eye_ay * 1.3)
    elif label == "angry":
        eye_ay = max(2, round(eye_ay * 0.7))
    for sx in (-1, 1):
        center = _pt(cx + sx * w * 0.22, eye_y)
        cv2.ellipse(img, center, (eye_ax, eye_ay), 0, 0, 360, dark, -1, cv2.LINE_AA)

    # Raised brows cost detection rate quickly (measured): surprise raises them only a little.
    brow_y = eye_y - h * 0.11 - (h * 0.01 if label == "surprise" else 0.0)
    _draw_brows(img, label, cx, w, h, brow_y, dark + 10)

    # Lighter nose bridge between the eyes: one of the cascade's strongest cues.
    bridge = min(255.0, skin + 30)
    cv2.line(
        img,
        _pt(cx, eye_y - h * 0.02),
        _pt(cx, cy + h * 0.1),
        bridge,
        max(2, round(4 * s)),
        cv2.LINE_AA,
    )
    _draw_mouth(img, label, cx, cy + h * 0.27, w, h, max(skin - 90, 10))

    img = cv2.GaussianBlur(img, (5, 5), 1.5)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _image_rng(seed: int, label: str, n: int) -> np.random.Generator:
    """A generator per image, so skipping existing files never shifts the other images."""
    return np.random.default_rng([seed, zlib.crc32(label.encode()), n])


def generate_labelled_set(
    out_dir: Path, labels: Sequence[str], per_label: int, seed: int, size: int = 128
) -> Path:
    """Write `out_dir/<label>/<label>_<n>.png`; deterministic for a seed, skips existing files."""
    if per_label < 1:
        raise SyntheticError(f"per_label must be >= 1, got {per_label}")
    unknown = [lab for lab in labels if lab not in DRAWABLE_LABELS]
    if unknown:
        raise SyntheticError(f"cannot draw labels {unknown}; known labels: {list(DRAWABLE_LABELS)}")
    out_dir = Path(out_dir)
    for label in labels:
        folder = out_dir / label
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_label):
            path = folder / f"{label}_{n}.png"
            if path.exists():
                continue
            ok, buf = cv2.imencode(".png", make_face(label, _image_rng(seed, label, n), size))
            if not ok:  # pragma: no cover - OpenCV always encodes uint8 PNG
                raise SyntheticError(f"could not encode {path}")
            atomic_write(path, buf.tobytes())  # an interrupted run leaves no truncated PNG
    return out_dir
