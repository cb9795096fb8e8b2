"""Image cleanup: every check a human reviewer would make, each with a recorded reason.

Reads the downloader's records and writes `faces/<label>/<sha256>.png` (grayscale, square,
`images.face_size`) plus one metadata row per image with its status, reason, fingerprints
and quality scores (so later validation can check them). Checks, cheapest first:

decode -> minimum size -> aspect ratio -> exact duplicate (pixel hash) -> near duplicate
(pHash + dHash) -> too dark / too bright -> low contrast -> drawing/cartoon -> low entropy
-> exactly one face -> (optional eye alignment) -> blur on the face -> crop with margin at
the canonical size. A near duplicate is only matched against ACCEPTED images, so a better
copy of a rejected picture still gets its chance.

Rows are processed in the order given (download files by date, then row order), and the
first image seen wins a duplicate, so older runs keep their images when the data grows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from emotionops.clean import quality as iq
from emotionops.clean.faces import (
    FaceBox,
    FaceDetector,
    align_face,
    crop_face,
    make_detector,
    to_gray,
)
from emotionops.params import ImagesParams

#: The warehouse column is VARCHAR(256).
MAX_REASON = 250


@dataclass
class ImageRecord:
    sha256: str
    url_sha256: str
    label: str
    width: int = 0
    height: int = 0
    format: str = ""
    n_faces: int = 0
    status: str = "rejected"  # accepted | rejected
    reason: str = ""
    face_path: str = ""  # relative to the faces root
    run_date: str = ""
    pixel_sha256: str = ""  # sha256 of the decoded pixels
    phash: str = ""  # 64-bit perceptual hash, 16 hex digits
    dhash: str = ""  # 64-bit difference hash, 16 hex digits
    duplicate_of: str = ""  # sha256 of the kept image this one duplicates
    brightness: float | None = None
    contrast: float | None = None
    entropy: float | None = None
    drawing_score: float | None = None
    sharpness: float | None = None
    align_angle: float | None = None
    votes: str = ""  # annotator votes of an imported image (dataset.votes.encode_votes)


def read_image(path: Path | str) -> np.ndarray:
    """Decode with Pillow (EXIF orientation applied) into an OpenCV BGR/gray array."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
        arr = np.asarray(img)
    return arr if arr.ndim == 2 else cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)


def _detect(detector: FaceDetector, image: np.ndarray, max_side: int) -> list[FaceBox]:
    """Detect on a copy shrunk to `max_side` (Haar cost grows with the pixel count), boxes
    mapped back to the full image."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return detector.detect(image)
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return [
        FaceBox(round(b.x / scale), round(b.y / scale), round(b.w / scale), round(b.h / scale))
        for b in detector.detect(small)
    ]


class ImageCleaner:
    """Checks images one at a time, remembering what it kept for duplicate detection."""

    def __init__(self, params: ImagesParams, detector: FaceDetector | None = None) -> None:
        self.params = params
        self.detector = detector or make_detector(
            params.detector, params.min_face_side, params.detector_model
        )
        self._pixels: dict[str, str] = {}  # pixel hash -> sha256 of the first image seen
        self._near = iq.HashIndex()  # pHashes of accepted images -> their sha256

    def check(self, path: Path, record: ImageRecord) -> np.ndarray | None:
        """Fill `record` (status, reason, hashes, scores); the face crop when accepted."""
        p = self.params
        try:
            image = read_image(path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            record.reason = f"cannot decode: {exc}"
            return None
        record.height, record.width = image.shape[:2]
        short, long = sorted((record.width, record.height))
        if short < p.min_side:
            record.reason = f"too small: {record.width}x{record.height} < {p.min_side}"
            return None
        if long / short > p.max_aspect:
            record.reason = f"odd aspect ratio: {long / short:.2f} > {p.max_aspect:g}"
            return None

        record.pixel_sha256 = iq.pixel_hash(image)
        first = self._pixels.setdefault(record.pixel_sha256, record.sha256)
        if first != record.sha256:
            record.duplicate_of = first
            record.reason = f"exact duplicate (same pixels) of {first}"
            return None
        small = iq.shrink(image)
        small_gray = iq.to_gray(small)
        record.phash, record.dhash = iq.phash(small_gray), iq.dhash(small_gray)
        near = self._near.match(
            record.phash, record.dhash, p.near_dup_distance, p.near_dup_dhash_distance
        )
        if near is not None:
            record.duplicate_of = near[0]
            record.reason = f"near duplicate of {near[0]} (phash {near[1]}, dhash {near[2]} bits)"
            return None

        exp = iq.exposure(small_gray)
        record.brightness = round(exp.brightness, 2)
        record.contrast = round(exp.contrast, 2)
        record.entropy = round(exp.entropy, 3)
        if exp.brightness < p.min_brightness:
            record.reason = f"too dark: mean luminance {exp.brightness:.1f} < {p.min_brightness:g}"
            return None
        if exp.brightness > p.max_brightness:
            record.reason = (
                f"too bright: mean luminance {exp.brightness:.1f} > {p.max_brightness:g}"
            )
            return None
        if exp.contrast < p.min_contrast:
            record.reason = f"low information: contrast {exp.contrast:.1f} < {p.min_contrast:g}"
            return None
        score = iq.drawing_score(small)
        record.drawing_score = round(score, 4)
        if score > p.max_drawing_score:
            record.reason = f"drawing/cartoon: score {score:.3f} > {p.max_drawing_score:g}"
            return None
        if exp.entropy < p.min_entropy:
            record.reason = f"low information: entropy {exp.entropy:.2f} < {p.min_entropy:g} bits"
            return None

        faces = _detect(self.detector, image, p.detect_max_side)
        record.n_faces = len(faces)
        if len(faces) != 1:
            record.reason = (
                "no face found" if not faces else f"{len(faces)} faces (need exactly one)"
            )
            return None
        box = faces[0]
        gray = to_gray(image)
        if p.align:
            gray, angle = align_face(gray, box)
            record.align_angle = round(angle, 2)
        side = max(box.w, box.h)
        cx, cy = box.x + box.w // 2, box.y + box.h // 2
        region = gray[
            max(0, cy - side // 2) : cy + side // 2, max(0, cx - side // 2) : cx + side // 2
        ]
        sharp = iq.sharpness(region, p.sharpness_size)
        record.sharpness = round(sharp, 2)
        if sharp < p.min_sharpness:
            record.reason = f"blurred: sharpness {sharp:.1f} < {p.min_sharpness:g}"
            return None
        record.status = "accepted"
        self._near.add(record.phash, record.dhash, record.sha256)
        return crop_face(gray, box, p.face_size, p.face_margin)


def reject_if_relabelled(first: ImageRecord, label: str, faces_root: Path) -> None:
    """The same picture seen under two emotions is ambiguous: take it (and its crop) out."""
    if first.label != label and first.status == "accepted":
        (faces_root / first.face_path).unlink(missing_ok=True)
        first.status, first.face_path = "rejected", ""
        first.reason = f"found under several labels ({first.label}, {label})"


def clean_images(
    downloads: Iterable[Mapping[str, Any]],
    faces_root: Path,
    params: ImagesParams,
    labels: list[str],
    detector: FaceDetector | None = None,
) -> list[ImageRecord]:
    """Check every successfully downloaded image once, in the given order, and write the
    accepted face crops. Same inputs in the same order give the same files and rows."""
    cleaner = ImageCleaner(params, detector)
    records: dict[str, ImageRecord] = {}
    for row in downloads:
        if row.get("status") != "ok":
            continue
        sha, label = str(row["sha256"]), str(row["label"])
        if sha in records:
            reject_if_relabelled(records[sha], label, faces_root)
            continue
        record = ImageRecord(sha, str(row.get("url_sha256", "")), label)
        record.format, record.run_date = str(row.get("format", "")), str(row.get("run_date", ""))
        records[sha] = record
        if label not in labels:
            record.reason = "label not in label set"
            continue
        face = cleaner.check(Path(str(row["path"])), record)
        record.reason = record.reason[:MAX_REASON]
        if face is not None:
            rel = Path(label) / f"{sha}.png"
            out = faces_root / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), face)
            record.face_path = rel.as_posix()
    return list(records.values())
