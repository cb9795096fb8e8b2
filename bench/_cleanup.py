"""Bench part (c): image cleanup throughput, and the drawing/cartoon heuristic measured on a
labelled sample (precision and recall of "is a drawing").

Real photos come from the shared data folder (EMOTIONOPS_REAL_DATA, default ../shared/data);
without it the throughput uses synthetic images only and the precision rows say so.
Drawings: procedural ones (cartoon, emoji, line, clip-art; seeds other than the ones the
threshold was chosen on) and, when present, the Adwaita theme's raster icons (real clip-art).
"""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from _drawings import STYLES, encode_like_web, make_drawing
from emotionops.acquire.scrape.synthetic import make_face
from emotionops.clean import quality as iq
from emotionops.clean.images import clean_images, read_image
from emotionops.params import ImagesParams

REAL_DATA = Path(
    os.environ.get("EMOTIONOPS_REAL_DATA", Path(__file__).resolve().parents[1] / "../shared/data")
)
ICONS = "/usr/share/icons/Adwaita/{256x256,512x512}/*/*.png"


def _real_photos() -> list[np.ndarray]:
    return [read_image(p) for p in sorted(glob.glob(str(REAL_DATA / "photos" / "*")))]


def _video_frames(per_video: int) -> list[np.ndarray]:
    frames = []
    for path in sorted(glob.glob(str(REAL_DATA / "videos" / "*"))):
        cap = cv2.VideoCapture(path)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        for k in range(per_video):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(k * n / per_video))
            ok, frame = cap.read()
            if ok:
                frames.append(frame)
        cap.release()
    return frames


def _fer(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    paths = sorted(glob.glob(str(REAL_DATA / "fer2013" / "publictest" / "*" / "*.jpg")))
    if not paths:
        return []
    return [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in rng.choice(paths, n, replace=False)]


def _icons(limit: int) -> list[np.ndarray]:
    out = []
    paths = sorted(glob.glob(ICONS.replace("{256x256,512x512}", "512x512")))
    paths += sorted(glob.glob(ICONS.replace("{256x256,512x512}", "256x256")))
    for p in paths[:limit]:
        img = cv2.imread(p, cv2.IMREAD_UNCHANGED)
        if img is None:
            continue
        if img.ndim == 3 and img.shape[2] == 4:  # composite on white, as a web page shows it
            a = img[..., 3:].astype(np.float32) / 255
            img = (img[..., :3] * a + 255 * (1 - a)).astype(np.uint8)
        out.append(img)
    return out


def _crop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random 60-95% crop, so re-used sources are distinct pictures, not near duplicates."""
    h, w = img.shape[:2]
    ch, cw = int(h * rng.uniform(0.6, 0.95)), int(w * rng.uniform(0.6, 0.95))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return img[y : y + ch, x : x + cw]


def _web_size(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    side = int(rng.integers(300, 1200))
    scale = side / max(img.shape[:2])
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(img, None, fx=scale, fy=scale, interpolation=interp)


def _drawing_rows(quick: bool) -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(2024)  # not the seeds the threshold was chosen on
    threshold = ImagesParams().max_drawing_score
    photos: dict[str, list[np.ndarray]] = {}
    real = _real_photos()
    if real:
        photos["real photos"] = real
        crops = []
        for img in real:
            h, w = img.shape[:2]
            for _ in range(1 if quick else 3):
                s = int(min(h, w) * rng.uniform(0.5, 0.9))
                y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
                crops.append(img[y : y + s, x : x + s])
        photos["photo crops"] = crops
        photos["video frames"] = _video_frames(3 if quick else 10)
        photos["FER faces (gray 48px)"] = _fer(20 if quick else 100, rng)
    drawings: dict[str, list[np.ndarray]] = {}
    n_draw = 5 if quick else 40
    for style in STYLES:
        imgs = []
        for _ in range(n_draw):
            raw = encode_like_web(make_drawing(style, rng), rng)
            imgs.append(cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR))
        drawings[f"procedural {style}"] = imgs
    icons = _icons(20 if quick else 200)
    if icons:
        drawings["Adwaita icons (real clip-art)"] = icons

    def flagged(imgs: list[np.ndarray]) -> int:
        return sum(iq.drawing_score(iq.shrink(img)) > threshold for img in imgs)

    fp = {k: flagged(v) for k, v in photos.items()}
    tp = {k: flagged(v) for k, v in drawings.items()}
    n_photo = sum(len(v) for v in photos.values())
    n_draw_total = sum(len(v) for v in drawings.values())
    tps, fps = sum(tp.values()), sum(fp.values())
    rows = [
        ("drawing heuristic: threshold", f"score > {threshold:g}", "images.max_drawing_score"),
        (
            "drawing heuristic: precision",
            f"{tps / max(1, tps + fps):.3f}",
            f"{tps} of {tps + fps} flagged are drawings"
            + ("" if real else " (NO real photos found: set EMOTIONOPS_REAL_DATA)"),
        ),
        (
            "drawing heuristic: recall",
            f"{tps / max(1, n_draw_total):.3f}",
            f"{tps} of {n_draw_total} drawings flagged",
        ),
        ("drawing heuristic: n photos / n drawings", f"{n_photo} / {n_draw_total}", ""),
    ]
    for k, v in photos.items():
        rows.append((f"  photos flagged: {k}", f"{fp[k]} / {len(v)}", "false positives"))
    for k, v in drawings.items():
        rows.append((f"  drawings flagged: {k}", f"{tp[k]} / {len(v)}", "true positives"))
    return rows


def _throughput_rows(quick: bool) -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(7)
    n_total = 60 if quick else 300
    sources: list[np.ndarray] = []
    real = _real_photos()
    frames = _video_frames(6) if real else []
    while len(sources) < n_total:
        k = len(sources) % 4
        if k == 0 and real:
            sources.append(_web_size(_crop(real[int(rng.integers(len(real)))], rng), rng))
        elif k == 1 and frames:
            sources.append(_web_size(_crop(frames[int(rng.integers(len(frames)))], rng), rng))
        elif k == 2:
            face = make_face(str(rng.choice(["happy", "sad", "surprise", "neutral"])), rng, 192)
            sources.append(_web_size(face, rng))
        else:
            sources.append(make_drawing(str(rng.choice(STYLES)), rng))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = []
        for i, img in enumerate(sources):
            path = root / "raw" / f"{i:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(75, 95))])
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            rows.append({"status": "ok", "sha256": sha, "url_sha256": sha, "label": "happy",
                         "path": str(path)})  # fmt: skip
        megapixels = sum(img.shape[0] * img.shape[1] for img in sources) / 1e6
        t0 = time.perf_counter()
        records = clean_images(rows, root / "faces", ImagesParams(), ["happy", "sad"])
        elapsed = time.perf_counter() - t0
    outcome = Counter(r.reason.split(":")[0].split(" of ")[0] or "accepted" for r in records)
    return [
        (
            "cleanup throughput",
            f"{len(records) / elapsed:.1f} images/s",
            f"{len(records)} JPEGs 300-1200 px ({megapixels:.0f} MP) in {elapsed:.1f} s, 1 process",
        ),
        ("cleanup outcomes", ", ".join(f"{k} {v}" for k, v in sorted(outcome.items())), ""),
    ]


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    """Rows (measure, value, note) for bench/acquisition.py."""
    return _throughput_rows(quick) + _drawing_rows(quick)


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(" | ".join(row))
