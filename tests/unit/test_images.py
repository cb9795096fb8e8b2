"""Image cleanup: reasons for every rejection, one face crop per accepted image."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from emotionops.images import clean_images
from emotionops.params import ImagesParams
from emotionops.scrape.synthetic import make_face


def _write(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


def _download_row(path: Path, sha: str, label: str = "happy") -> dict:
    return {"status": "ok", "sha256": sha, "url_sha256": "u" + sha, "label": label,
            "path": str(path), "format": "PNG", "run_date": "2026-11-20"}  # fmt: skip


@pytest.fixture()
def detectable_face() -> np.ndarray:
    """A drawn face the Haar detector finds (the generator promises >= 85% of them)."""
    from emotionops.faces import HaarFaceDetector

    rng = np.random.default_rng(3)
    for _ in range(20):
        face = make_face("happy", rng)
        if len(HaarFaceDetector().detect(face)) == 1:
            return face
    raise AssertionError("no detectable synthetic face in 20 tries")


def test_clean_accepts_one_face_and_gives_reasons(tmp_path, detectable_face) -> None:
    raw = tmp_path / "raw"
    two = np.hstack([detectable_face, detectable_face])
    rows = [
        _download_row(_write(raw / "a.png", detectable_face), "a"),
        _download_row(_write(raw / "b.png", np.full((128, 128), 200, np.uint8)), "b"),
        _download_row(_write(raw / "c.png", detectable_face[:20, :20]), "c"),
        _download_row(_write(raw / "d.png", two), "d"),
        _download_row(raw / "missing.png", "e"),
        _download_row(_write(raw / "f.png", detectable_face), "f", label="bored"),
        {"status": "rejected", "sha256": "", "label": "happy"},
    ]
    (raw / "missing.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    faces = tmp_path / "faces"
    records = {r.sha256: r for r in clean_images(rows, faces, ImagesParams(), ["happy", "sad"])}

    assert records["a"].status == "accepted" and records["a"].n_faces == 1
    crop = cv2.imread(str(faces / records["a"].face_path), cv2.IMREAD_UNCHANGED)
    assert crop.shape == (48, 48)
    assert records["b"].reason == "no face found"
    assert records["c"].reason.startswith("too small")
    assert records["d"].reason == "2 faces (need exactly one)"
    assert records["e"].reason.startswith("cannot decode")
    assert records["f"].reason == "label not in label set"
    assert sorted(p.name for p in faces.rglob("*.png")) == ["a.png"]


def test_same_bytes_under_two_labels_are_checked_once(tmp_path, detectable_face) -> None:
    path = _write(tmp_path / "raw" / "a.png", detectable_face)
    rows = [_download_row(path, "a", "happy"), _download_row(path, "a", "sad")]
    records = clean_images(rows, tmp_path / "faces", ImagesParams(), ["happy", "sad"])
    assert len(records) == 1 and records[0].status == "rejected"
    assert records[0].reason == "found under several labels (happy, sad)"
    assert not any((tmp_path / "faces").rglob("*.png"))
