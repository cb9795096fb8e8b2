"""The synthetic face set: detectable by the pipeline's detector, deterministic, learnable."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from emotionops.acquire.scrape.synthetic import (
    DRAWABLE_LABELS,
    SyntheticError,
    generate_labelled_set,
    make_face,
)
from emotionops.clean.faces import HaarFaceDetector, crop_face

PER_LABEL = 16


@pytest.fixture(scope="module")
def face_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_labelled_set(
        tmp_path_factory.mktemp("faces"), DRAWABLE_LABELS, PER_LABEL, seed=3
    )


@pytest.fixture(scope="module")
def detections(face_set: Path) -> dict[Path, list]:
    detector = HaarFaceDetector()
    return {
        path: detector.detect(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
        for path in sorted(face_set.glob("*/*.png"))
    }


def test_layout_and_format(face_set: Path) -> None:
    for label in DRAWABLE_LABELS:
        names = sorted(p.name for p in (face_set / label).iterdir())
        assert names == sorted(f"{label}_{n}.png" for n in range(PER_LABEL))
    image = cv2.imread(str(face_set / "happy" / "happy_0.png"), cv2.IMREAD_UNCHANGED)
    assert image.shape == (128, 128) and image.dtype == np.uint8


def test_haar_finds_exactly_one_face_in_most_images(detections: dict[Path, list]) -> None:
    one = {path: len(boxes) == 1 for path, boxes in detections.items()}
    assert len(one) == len(DRAWABLE_LABELS) * PER_LABEL
    assert sum(one.values()) / len(one) >= 0.85
    for label in DRAWABLE_LABELS:
        rate = np.mean([ok for path, ok in one.items() if path.parent.name == label])
        assert rate >= 0.75, f"{label}: only {rate:.0%} detected"


def test_labels_are_learnable(detections: dict[Path, list]) -> None:
    """A linear model on detected face crops separates the expressions."""
    features, targets, is_test = [], [], []
    for path, boxes in detections.items():
        if len(boxes) != 1:
            continue
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        crop = crop_face(image, boxes[0], 24, 0.1).astype(np.float32).ravel()
        features.append((crop - crop.mean()) / (crop.std() + 1e-6))
        targets.append(DRAWABLE_LABELS.index(path.parent.name))
        is_test.append(int(path.stem.rsplit("_", 1)[1]) % 4 == 0)
    x, y, test = np.array(features), np.array(targets), np.array(is_test)
    weights, bias = _fit_softmax(x[~test], y[~test], len(DRAWABLE_LABELS))
    accuracy = np.mean((x[test] @ weights + bias).argmax(1) == y[test])
    assert accuracy >= 0.8


def _fit_softmax(x: np.ndarray, y: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by gradient descent (numpy: no sklearn import cost)."""
    weights, bias = np.zeros((x.shape[1], classes)), np.zeros(classes)
    onehot = np.eye(classes)[y]
    for _ in range(500):
        z = x @ weights + bias
        p = np.exp(z - z.max(1, keepdims=True))
        grad = (p / p.sum(1, keepdims=True) - onehot) / len(y)
        weights -= 0.5 * (x.T @ grad + 1e-3 * weights)
        bias -= 0.5 * grad.sum(0)
    return weights, bias


def test_deterministic_and_idempotent(tmp_path: Path) -> None:
    labels = ["happy", "sad"]
    a = generate_labelled_set(tmp_path / "a", labels, 3, seed=11)
    b = generate_labelled_set(tmp_path / "b", labels, 3, seed=11)
    files = sorted(p.relative_to(a) for p in a.glob("*/*.png"))
    assert len(files) == 6
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)

    # Re-running leaves existing files alone; a deleted file comes back byte-identical.
    before = {f: (a / f).stat().st_mtime_ns for f in files}
    original = (a / "sad" / "sad_1.png").read_bytes()
    (a / "sad" / "sad_1.png").unlink()
    generate_labelled_set(a, labels, 3, seed=11)
    assert (a / "sad" / "sad_1.png").read_bytes() == original
    assert all((a / f).stat().st_mtime_ns == before[f] for f in files if f.name != "sad_1.png")
    assert not list(a.glob("*/*.tmp*"))

    c = generate_labelled_set(tmp_path / "c", labels, 3, seed=12)
    assert (c / "happy" / "happy_0.png").read_bytes() != (a / "happy" / "happy_0.png").read_bytes()


def test_make_face_shapes_and_errors() -> None:
    rng = np.random.default_rng(0)
    face = make_face("surprise", rng, size=96)
    assert face.shape == (96, 96) and face.dtype == np.uint8
    assert face.std() > 20  # a drawn face, not a flat image
    with pytest.raises(SyntheticError, match="contempt"):
        make_face("contempt", rng)
    with pytest.raises(SyntheticError, match="contempt"):
        generate_labelled_set(Path("unused"), ["happy", "contempt"], 2, seed=1)
    with pytest.raises(SyntheticError, match="per_label"):
        generate_labelled_set(Path("unused"), ["happy"], 0, seed=1)
