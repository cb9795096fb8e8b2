"""Image fingerprints and quality scores used by the cleanup step.

WHY here and not in images.py: these are pure functions of pixel arrays (no files, no
records), so they are cheap to test one by one and the benchmark can measure them alone.
Everything runs on small resized copies: a 1200 px photo is hashed and scored on <= 256 px.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

#: Longest side of the working copy used for hashes and whole-image quality scores.
WORK_SIDE = 256


def to_gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def shrink(image: np.ndarray, max_side: int = WORK_SIDE) -> np.ndarray:
    """A copy whose longest side is at most `max_side` (area interpolation, never upscaled)."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


# Fingerprints -----------------------------------------------------------------------------


def pixel_hash(image: np.ndarray) -> str:
    """sha256 of the decoded pixels and their shape: the same picture saved again with other
    metadata, or losslessly re-encoded, has the same pixel hash but other file bytes."""
    arr = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{arr.shape}:{arr.dtype}".encode())
    digest.update(arr.tobytes())
    return digest.hexdigest()


def _bits_to_hex(bits: np.ndarray) -> str:
    return f"{int.from_bytes(np.packbits(bits.astype(np.uint8)).tobytes(), 'big'):016x}"


def phash(gray: np.ndarray) -> str:
    """64-bit perceptual hash (DCT of a 32x32 copy, 8x8 low frequencies vs their median) as
    16 hex digits. Robust to resizing, re-compression and small brightness changes."""
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].ravel()
    # The DC term (mean brightness) is left out of the median so it cannot dominate.
    return _bits_to_hex(low > np.median(low[1:]))


def dhash(gray: np.ndarray) -> str:
    """64-bit difference hash (is each pixel of a 9x8 copy brighter than its right neighbour)."""
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    return _bits_to_hex(small[:, 1:] > small[:, :-1])


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex hashes of the same length."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


class HashIndex:
    """Near-duplicate lookup over (pHash, dHash) pairs: a match needs BOTH Hamming distances
    within their limits (two independent hashes agreeing makes false matches between
    different but similar pictures rarer). A vectorised linear scan: about 1 ms per query
    on 100k images, simpler than a BK-tree and fast enough here."""

    def __init__(self) -> None:
        self._hashes = np.empty((0, 2), np.uint64)
        self._keys: list[str] = []

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, phash_hex: str, dhash_hex: str, key: str) -> None:
        n = len(self._keys)
        if n == len(self._hashes):
            grown = np.empty((max(64, 2 * n), 2), np.uint64)
            grown[:n] = self._hashes[:n]
            self._hashes = grown
        self._hashes[n] = (int(phash_hex, 16), int(dhash_hex, 16))
        self._keys.append(key)

    def match(
        self, phash_hex: str, dhash_hex: str, max_phash: int, max_dhash: int
    ) -> tuple[str, int, int] | None:
        """(key, phash distance, dhash distance) of the closest stored image within both
        limits (smallest pHash distance, then the earliest added), or None."""
        n = len(self._keys)
        if not n:
            return None
        query = np.array([int(phash_hex, 16), int(dhash_hex, 16)], np.uint64)
        dist = np.bitwise_count(self._hashes[:n] ^ query).astype(np.int32)
        ok = np.flatnonzero((dist[:, 0] <= max_phash) & (dist[:, 1] <= max_dhash))
        if not len(ok):
            return None
        i = int(ok[np.argmin(dist[ok, 0])])
        return self._keys[i], int(dist[i, 0]), int(dist[i, 1])


# Quality scores ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Exposure:
    brightness: float  # mean luminance 0-255
    contrast: float  # standard deviation of luminance
    entropy: float  # Shannon entropy of the 256-bin luminance histogram, bits (0-8)


def exposure(gray: np.ndarray) -> Exposure:
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / gray.size
    return Exposure(
        brightness=float(gray.mean()),
        contrast=float(gray.std()),
        entropy=float(-(p * np.log2(p)).sum()),
    )


def drawing_score(small: np.ndarray) -> float:
    """Flat-region fraction minus texture fraction, in [-1, 1]; high means drawing.

    Drawings (cartoons, emoji, line art, clip-art) are mostly flat fills separated by sharp
    outlines; photos have texture and sensor noise almost everywhere. A pixel is flat when
    no channel varies by more than 3 levels in its 3x3 neighbourhood (JPEG keeps flat fills
    flat), textured when its luminance gradient is moderate (Sobel magnitude in (10, 100]).
    Pass the WORK_SIDE copy so that the score does not depend on the file's resolution.
    """
    bgr = small if small.ndim == 3 else cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
    kernel = np.ones((3, 3), np.uint8)
    local_range = cv2.dilate(bgr, kernel).astype(np.int16) - cv2.erode(bgr, kernel)
    flat = float((local_range.max(axis=2) <= 3).mean())
    gray = to_gray(bgr).astype(np.float32)
    mag = cv2.magnitude(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    textured = float(((mag > 10) & (mag <= 100)).mean())
    return flat - textured


def sharpness(face_gray: np.ndarray, size: int = 64) -> float:
    """Variance of the Laplacian of the face region at `size` px (downscaled only, never
    upscaled, so a small sharp face is not made blurry by interpolation): scale-normalised
    because a large photo's face and a thumbnail's face are measured at the same resolution."""
    side = min(size, face_gray.shape[0], face_gray.shape[1])
    work = cv2.resize(face_gray, (side, side), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(work.astype(np.float32), cv2.CV_32F).var())
