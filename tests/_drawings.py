"""Procedural drawings (cartoon faces, emoji, line drawings, clip-art) drawn at run time.

WHY: the cleanup step rejects drawings with a measured heuristic, and measuring it needs a
labelled sample of drawings that works offline and carries no third-party artwork. The
styles vary on purpose (flat fills with outlines, shaded emoji, ink on paper, clip-art with
gradients, JPEG or PNG, 300-1000 px) so that the measurement is not of one look only.
"""

from __future__ import annotations

import cv2
import numpy as np

#: The drawing styles `make_drawing` knows.
STYLES = ("cartoon", "emoji", "line", "clipart")


def _color(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(lo, hi, 3))


def _pt(x: float, y: float) -> tuple[int, int]:
    return round(x), round(y)


def _background(rng: np.random.Generator, h: int, w: int, gradient: bool) -> np.ndarray:
    c0 = np.array(_color(rng, 120, 256), np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = c0
    if gradient:  # vertical two-colour gradient, as many clip-art backgrounds have
        c1 = np.array(_color(rng, 60, 256), np.float32)
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        img = c0 * (1 - t) + c1 * t + np.zeros((h, w, 3), np.float32)
    return img


def _face_parts(
    img: np.ndarray,
    rng: np.random.Generator,
    cx: float,
    cy: float,
    r: float,
    ink: tuple[int, int, int],
    thick: int,
) -> None:
    """Eyes, brows and a mouth in cartoon proportions (big eyes, simple curves)."""
    eye_dx, eye_y = r * rng.uniform(0.3, 0.42), cy - r * rng.uniform(0.1, 0.25)
    eye_r = r * rng.uniform(0.1, 0.2)
    white_eyes = rng.random() < 0.6
    for sx in (-1, 1):
        c = _pt(cx + sx * eye_dx, eye_y)
        if white_eyes:
            cv2.ellipse(img, c, _pt(eye_r, eye_r * 1.3), 0, 0, 360, (255, 255, 255), -1)
            cv2.ellipse(img, c, _pt(eye_r, eye_r * 1.3), 0, 0, 360, ink, thick, cv2.LINE_AA)
            cv2.circle(img, c, max(2, round(eye_r * 0.5)), ink, -1, cv2.LINE_AA)
        else:
            cv2.ellipse(img, c, _pt(eye_r * 0.6, eye_r), 0, 0, 360, ink, -1, cv2.LINE_AA)
        if rng.random() < 0.5:  # brows
            by = eye_y - eye_r * 1.8
            cv2.line(img, _pt(c[0] - eye_r, by), _pt(c[0] + eye_r, by), ink, thick, cv2.LINE_AA)
    my, mw = cy + r * rng.uniform(0.3, 0.5), r * rng.uniform(0.25, 0.5)
    kind = rng.integers(0, 3)
    if kind == 0:  # smile
        cv2.ellipse(img, _pt(cx, my - mw * 0.4), _pt(mw, mw * 0.6), 0, 20, 160, ink, thick)
    elif kind == 1:  # open mouth, filled
        cv2.ellipse(img, _pt(cx, my), _pt(mw * 0.6, mw * 0.45), 0, 0, 360, (40, 30, 160), -1)
        cv2.ellipse(img, _pt(cx, my), _pt(mw * 0.6, mw * 0.45), 0, 0, 360, ink, thick)
    else:  # frown
        cv2.ellipse(img, _pt(cx, my + mw * 0.4), _pt(mw, mw * 0.5), 0, 200, 340, ink, thick)


def _cartoon(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = _background(rng, h, w, gradient=rng.random() < 0.3)
    cx, cy, r = w / 2 + rng.uniform(-0.1, 0.1) * w, h / 2, min(h, w) * rng.uniform(0.28, 0.4)
    ink = _color(rng, 0, 60)
    thick = max(2, round(r * rng.uniform(0.02, 0.05)))
    hair = _color(rng, 0, 200)
    cv2.ellipse(img, _pt(cx, cy - r * 0.25), _pt(r * 1.1, r * 1.0), 0, 180, 360, hair, -1)
    skin = (int(rng.uniform(120, 200)), int(rng.uniform(150, 210)), int(rng.uniform(200, 255)))
    cv2.ellipse(img, _pt(cx, cy), _pt(r * 0.9, r), 0, 0, 360, skin, -1, cv2.LINE_AA)
    cv2.ellipse(img, _pt(cx, cy), _pt(r * 0.9, r), 0, 0, 360, ink, thick, cv2.LINE_AA)
    # Body/shoulders below the head.
    body = _color(rng)
    cv2.ellipse(img, _pt(cx, cy + r * 2.1), _pt(r * 1.6, r * 1.1), 0, 180, 360, body, -1)
    cv2.ellipse(img, _pt(cx, cy + r * 2.1), _pt(r * 1.6, r * 1.1), 0, 180, 360, ink, thick)
    _face_parts(img, rng, cx, cy, r, ink, thick)
    if rng.random() < 0.5:  # rosy cheeks
        for sx in (-1, 1):
            c = _pt(cx + sx * r * 0.5, cy + r * 0.2)
            cv2.circle(img, c, round(r * 0.12), (150, 150, 250), -1, cv2.LINE_AA)
    return img


def _emoji(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = _background(rng, h, w, gradient=False)
    if rng.random() < 0.6:
        img[:] = 255
    cx, cy, r = w / 2, h / 2, min(h, w) * rng.uniform(0.35, 0.45)
    ink = _color(rng, 0, 70)
    thick = max(2, round(r * 0.04))
    yellow = np.array((rng.uniform(0, 60), rng.uniform(190, 230), rng.uniform(230, 255)))
    if rng.random() < 0.5:  # radial shading, as modern emoji sets have
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        d = np.sqrt((xx - cx + r * 0.3) ** 2 + (yy - cy + r * 0.3) ** 2) / (2 * r)
        shade = yellow[None, None, :] * (1.05 - 0.35 * np.clip(d, 0, 1))[..., None]
        mask = np.zeros((h, w), np.uint8)
        cv2.circle(mask, _pt(cx, cy), round(r), 255, -1, cv2.LINE_AA)
        a = (mask.astype(np.float32) / 255)[..., None]
        img = img * (1 - a) + np.clip(shade, 0, 255) * a
    else:
        cv2.circle(img, _pt(cx, cy), round(r), tuple(float(c) for c in yellow), -1, cv2.LINE_AA)
    if rng.random() < 0.7:
        cv2.circle(img, _pt(cx, cy), round(r), ink, thick, cv2.LINE_AA)
    _face_parts(img, rng, cx, cy, r, ink, thick + 1)
    return img


def _line(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    paper = rng.uniform(225, 255)
    img = np.full((h, w, 3), paper, np.float32)
    if rng.random() < 0.4:  # slightly tinted or textured paper
        img += np.array(_color(rng, 0, 20), np.float32) - 10
        img += rng.normal(0, rng.uniform(0.5, 3), (h, w, 1)).astype(np.float32)
    ink = (int(rng.uniform(0, 80)),) * 3
    thick = int(rng.integers(1, 4))
    cx, cy, r = w / 2, h / 2, min(h, w) * rng.uniform(0.25, 0.38)
    cv2.ellipse(img, _pt(cx, cy), _pt(r * 0.8, r), 0, 0, 360, ink, thick, cv2.LINE_AA)
    # Neck and shoulders, a nose, hair strokes.
    for sx in (-1, 1):
        cv2.line(img, _pt(cx + sx * r * 0.3, cy + r * 0.95), _pt(cx + sx * r * 0.35, cy + r * 1.4),
                 ink, thick, cv2.LINE_AA)  # fmt: skip
        cv2.line(img, _pt(cx + sx * r * 0.35, cy + r * 1.4), _pt(cx + sx * r * 1.5, cy + r * 1.8),
                 ink, thick, cv2.LINE_AA)  # fmt: skip
    cv2.line(img, _pt(cx, cy - r * 0.05), _pt(cx - r * 0.1, cy + r * 0.25), ink, thick)
    for _ in range(int(rng.integers(4, 15))):
        x0 = cx + rng.uniform(-0.8, 0.8) * r
        pts = np.array([[x0, cy - r * 0.7], [x0 + rng.uniform(-0.3, 0.3) * r, cy - r * 1.15],
                        [x0 + rng.uniform(-0.5, 0.5) * r, cy - r * 0.9]])  # fmt: skip
        cv2.polylines(img, [np.round(pts).astype(np.int32)], False, ink, thick, cv2.LINE_AA)
    _face_parts(img, rng, cx, cy, r, ink, thick)
    if rng.random() < 0.3:  # pencil hatching on one cheek
        for k in range(8):
            x = cx + r * 0.3 + k * r * 0.04
            cv2.line(img, _pt(x, cy + r * 0.1), _pt(x + r * 0.1, cy + r * 0.4), ink, 1)
    return img


def _clipart(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = _background(rng, h, w, gradient=rng.random() < 0.6)
    ink = _color(rng, 0, 50) if rng.random() < 0.7 else None
    thick = max(2, round(min(h, w) * 0.01))
    for _ in range(int(rng.integers(2, 6))):  # decorative shapes
        c, s = _pt(rng.uniform(0, w), rng.uniform(0, h)), round(min(h, w) * rng.uniform(0.05, 0.2))
        col = _color(rng)
        if rng.random() < 0.5:
            cv2.circle(img, c, s, col, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(img, (c[0] - s, c[1] - s), (c[0] + s, c[1] + s), col, -1)
        if ink is not None:
            cv2.circle(img, c, s, ink, thick, cv2.LINE_AA)
    cx, cy, r = w / 2, h * 0.42, min(h, w) * rng.uniform(0.2, 0.3)
    body = _color(rng)
    cv2.ellipse(img, _pt(cx, cy + r * 2.2), _pt(r * 1.5, r * 1.3), 0, 180, 360, body, -1)
    skin = _color(rng, 140, 256)
    cv2.circle(img, _pt(cx, cy), round(r), skin, -1, cv2.LINE_AA)
    if rng.random() < 0.5:  # a highlight band, as vector clip-art often has
        hl = tuple(min(255, c + 40) for c in skin)
        cv2.ellipse(
            img, _pt(cx - r * 0.3, cy - r * 0.4), _pt(r * 0.35, r * 0.2), -30, 0, 360, hl, -1
        )
    if ink is not None:
        cv2.circle(img, _pt(cx, cy), round(r), ink, thick, cv2.LINE_AA)
    _face_parts(img, rng, cx, cy, r, ink or (30, 30, 30), thick)
    return img


_DRAW = {"cartoon": _cartoon, "emoji": _emoji, "line": _line, "clipart": _clipart}


def make_drawing(
    style: str, rng: np.random.Generator, size: tuple[int, int] | None = None
) -> np.ndarray:
    """One BGR uint8 drawing of a face in `style`, `size`=(h, w) or a random web-like size."""
    if style not in _DRAW:
        raise ValueError(f"unknown drawing style {style!r}; known: {list(STYLES)}")
    if size is None:
        side = int(rng.integers(300, 1000))
        size = (side, int(side * rng.uniform(0.75, 1.33)))
    h, w = size
    img = np.clip(_DRAW[style](rng, h, w), 0, 255).astype(np.uint8)
    if rng.random() < 0.3:  # a slightly soft rendering (anti-aliased exports, resampling)
        img = cv2.GaussianBlur(img, (3, 3), 0.8)
    return img


def encode_like_web(img: np.ndarray, rng: np.random.Generator) -> bytes:
    """PNG or JPEG (quality 60-95) bytes, as drawings are found on the web."""
    if rng.random() < 0.5:
        ok, buf = cv2.imencode(".png", img)
    else:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 96))])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 images
        raise ValueError("could not encode drawing")
    return buf.tobytes()
