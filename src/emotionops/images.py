"""Image cleanup: decode, size check, exactly one face, canonical face crop.

Reads the downloader's records, writes `faces/<label>/<sha256>.png` (grayscale, square,
`images.face_size`) and one metadata row per image with its status and reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from emotionops.faces import HaarFaceDetector, crop_face
from emotionops.params import ImagesParams


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


def read_image(path: Path) -> np.ndarray:
    """Decode with Pillow (EXIF orientation applied) into an OpenCV BGR/gray array."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
        arr = np.asarray(img)
    return arr if arr.ndim == 2 else cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)


def check_image(
    path: Path, params: ImagesParams, detector: HaarFaceDetector
) -> tuple[ImageRecord, np.ndarray | None]:
    """The record for one downloaded file, and its face crop when accepted."""
    record = ImageRecord(sha256="", url_sha256="", label="")
    try:
        image = read_image(path)
    except (OSError, ValueError, SyntaxError) as exc:
        record.reason = f"cannot decode: {exc}"
        return record, None
    record.height, record.width = image.shape[:2]
    if min(record.width, record.height) < params.min_side:
        record.reason = f"too small: {record.width}x{record.height} < {params.min_side}"
        return record, None
    faces = detector.detect(image)
    record.n_faces = len(faces)
    if len(faces) != 1:
        record.reason = "no face found" if not faces else f"{len(faces)} faces (need exactly one)"
        return record, None
    record.status = "accepted"
    return record, crop_face(image, faces[0], params.face_size, params.face_margin)


def clean_images(
    downloads: Iterable[Mapping[str, Any]],
    faces_root: Path,
    params: ImagesParams,
    labels: list[str],
) -> list[ImageRecord]:
    """Check every successfully downloaded image once (first label wins for repeated bytes)
    and write accepted face crops. Same inputs give the same files."""
    detector = HaarFaceDetector(min_face_side=params.min_face_side)
    records: dict[str, ImageRecord] = {}
    for row in downloads:
        if row.get("status") != "ok":
            continue
        sha, label = str(row["sha256"]), str(row["label"])
        if sha in records:
            first = records[sha]
            if first.label != label and first.status == "accepted":
                # The same picture scraped for two emotions is ambiguous: keep it out.
                (faces_root / first.face_path).unlink(missing_ok=True)
                first.status, first.face_path = "rejected", ""
                first.reason = f"found under several labels ({first.label}, {label})"
            continue
        if label not in labels:
            records[sha] = ImageRecord(
                sha, str(row["url_sha256"]), label, reason="label not in label set"
            )
            continue
        record, face = check_image(Path(str(row["path"])), params, detector)
        record.sha256, record.url_sha256, record.label = sha, str(row["url_sha256"]), label
        record.format, record.run_date = str(row.get("format", "")), str(row.get("run_date", ""))
        if face is not None:
            rel = Path(label) / f"{sha}.png"
            out = faces_root / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), face)
            record.face_path = rel.as_posix()
        records[sha] = record
    return list(records.values())
