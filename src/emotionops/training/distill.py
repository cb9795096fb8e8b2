"""Offline distillation: train targets that mix the true label with teachers' soft labels.

A soft label says which wrong emotions a face resembles (a sad face that looks neutral), which
a one-hot label cannot; a student learns more per epoch from it. The teachers (the `fer` and
`human` networks) run once over the train split before training, each on the face and its
mirror, so the cost is one forward pass per image, not one per epoch.

Both shipped teachers memorised FER2013's train split (they score 75-83% there against 65% on
PublicTest), so their probabilities on train faces are over-confident; the temperature
flattens them (p**(1/T), renormalised) and the one-hot share keeps the true label on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

    from emotionops.params import TrainParams
    from emotionops.training.data import SplitArrays


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities at a temperature: softmax(log(p) / T), i.e. p**(1/T) renormalised per row."""
    logp = np.log(np.clip(probs.astype(np.float64), 1e-12, None)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


def teacher_probs(
    teachers: Sequence[keras.Model], images: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """Mean probabilities of the teachers over each face and its mirror ([n, S, S, 1] raw pixels)."""
    x = images.astype(np.float32)
    views = (x, x[:, :, ::-1])
    total = np.zeros((len(x), teachers[0].output_shape[-1]), dtype=np.float64)
    for teacher in teachers:
        for view in views:
            total += np.asarray(teacher.predict(view, batch_size=batch_size, verbose=0))
    return (total / (2 * len(teachers))).astype(np.float32)


def soft_targets(
    labels: np.ndarray, teacher: np.ndarray, weight: float, temperature: float
) -> np.ndarray:
    """(1 - weight) * one-hot(label) + weight * teacher probabilities at `temperature`.
    `labels` may also be target vectors [n, k] (train.targets votes: vote distributions),
    which then take the one-hot's place.

    With weight <= 0.5 the true label keeps the largest share of every target, so the train
    accuracy Keras reports (argmax of the target) still counts true labels."""
    n_classes = teacher.shape[1]
    if len(labels) != len(teacher):
        raise ValueError(f"{len(labels)} labels but {len(teacher)} teacher predictions")
    labels = np.asarray(labels)
    if labels.ndim == 2:
        base = labels.astype(np.float32)
    else:
        base = np.eye(n_classes, dtype=np.float32)[labels.astype(int)]
    return (1 - weight) * base + weight * soften(teacher, temperature)


def distilled_targets_for(
    params: TrainParams, labels: list[str], train_split: SplitArrays
) -> np.ndarray:
    """The train targets params.train's distillation settings give for the decoded train split."""
    from emotionops.training.models import build_partners

    teachers = build_partners(params, labels, params.distill_from, role="teacher")
    return soft_targets(
        train_split.labels if train_split.targets is None else train_split.targets,
        teacher_probs(teachers, train_split.images),
        params.distill_weight,
        params.distill_temperature,
    )
