"""Fingerprints and quality scores: hashes survive resizing/re-encoding, scores separate
what they claim to separate (drawings vs photos, sharp vs blurred)."""

from __future__ import annotations

import glob

import cv2
import numpy as np
import pytest

from _drawings import STYLES, encode_like_web, make_drawing
from emotionops.acquire.scrape.synthetic import make_face
from emotionops.clean import quality as iq


@pytest.fixture(scope="module")
def photo_like() -> np.ndarray:
    """A textured, photo-like grayscale image (smoothed noise plus a face)."""
    rng = np.random.default_rng(1)
    face = cv2.resize(make_face("sad", rng, 128), (300, 300))
    return face


def test_pixel_hash_ignores_encoding_but_not_pixels(photo_like) -> None:
    _ok, png = cv2.imencode(".png", photo_like, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    again = cv2.imdecode(png, cv2.IMREAD_UNCHANGED)
    assert iq.pixel_hash(again) == iq.pixel_hash(photo_like)
    changed = photo_like.copy()
    changed[0, 0] ^= 1
    assert iq.pixel_hash(changed) != iq.pixel_hash(photo_like)
    assert iq.pixel_hash(photo_like.reshape(150, 600)) != iq.pixel_hash(photo_like)


def test_perceptual_hashes_survive_resize_and_jpeg_but_not_other_pictures(photo_like) -> None:
    small = cv2.resize(photo_like, (170, 170), interpolation=cv2.INTER_AREA)
    _ok, jpg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 75])
    copy = cv2.imdecode(jpg, cv2.IMREAD_GRAYSCALE)
    a, b = iq.shrink(photo_like), iq.shrink(copy)
    assert iq.hamming(iq.phash(a), iq.phash(b)) <= 6
    assert iq.hamming(iq.dhash(a), iq.dhash(b)) <= 6
    other = np.ascontiguousarray(np.rot90(photo_like))
    assert iq.hamming(iq.phash(a), iq.phash(other)) > 12


def test_hash_index_needs_both_hashes_within_limits() -> None:
    index = iq.HashIndex()
    index.add("0000000000000000", "0000000000000000", "first")
    index.add("00000000000000ff", "0000000000000000", "second")
    assert index.match("0000000000000003", "0000000000000001", 6, 6) == ("first", 2, 1)
    assert index.match("0000000000000003", "00000000000000ff", 6, 6) is None  # dHash too far
    assert index.match("ffffffffffffffff", "0000000000000000", 6, 6) is None
    assert len(index) == 2


def test_exposure_on_known_arrays() -> None:
    flat = np.full((10, 10), 100, np.uint8)
    assert iq.exposure(flat) == iq.Exposure(100.0, 0.0, 0.0)
    halves = np.zeros((10, 10), np.uint8)
    halves[:, 5:] = 200
    e = iq.exposure(halves)
    assert (e.brightness, e.contrast, e.entropy) == (100.0, 100.0, 1.0)


@pytest.mark.parametrize("style", STYLES)
def test_drawings_score_high_photo_like_low(style, photo_like) -> None:
    rng = np.random.default_rng(7)
    for _ in range(3):
        raw = encode_like_web(make_drawing(style, rng), rng)
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        assert iq.drawing_score(iq.shrink(img)) > 0.5, style
    assert iq.drawing_score(iq.shrink(photo_like)) < 0.0


def test_unknown_drawing_style() -> None:
    with pytest.raises(ValueError, match="unknown drawing style"):
        make_drawing("anime", np.random.default_rng(0))


def test_sharpness_drops_with_blur_and_is_scale_normalised(photo_like) -> None:
    sharp = iq.sharpness(photo_like)
    assert iq.sharpness(cv2.GaussianBlur(photo_like, (0, 0), 8)) < sharp / 3
    # The same face at twice the resolution is measured at the same 64 px: similar score.
    big = cv2.resize(photo_like, (600, 600), interpolation=cv2.INTER_CUBIC)
    assert iq.sharpness(big) == pytest.approx(sharp, rel=0.35)


def test_real_photos_are_not_drawings(real_data) -> None:
    """Real photographs (shared data, skipped when absent) all score as photos."""
    from emotionops.clean.images import read_image

    paths = sorted(glob.glob(str(real_data / "photos" / "*")))
    assert paths
    scores = {p: iq.drawing_score(iq.shrink(read_image(p))) for p in paths}
    assert max(scores.values()) < 0.5, scores
