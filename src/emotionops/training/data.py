"""Split CSV -> tf.data datasets per split.

Images are decoded once, eagerly, in Python: a missing or corrupt file then fails with an
error that names it, instead of an opaque tf.data error half-way through an epoch. Face crops
are tiny (48x48 uint8 = 2.3 kB each), so even FER2013-sized sets fit in memory comfortably.

Every TRAINING batch has an even size: TF 2.21 + oneDNN crashes the process (segfault /
abort) in the backward pass of a strided 1x1 Conv2D on odd batches (PLATFORM-NOTES). The
forward pass is unaffected, so val/test keep every image.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from emotionops.errors import EmotionOpsError
from emotionops.params import AugmentParams

if TYPE_CHECKING:
    import tensorflow as tf

SPLITS = ("train", "val", "test")
REQUIRED_COLUMNS = ("path", "label", "split")
VOTES_COLUMN = "votes"  # optional: dataset.split.VOTES_COLUMN (annotator votes, '' = none)
VOTES_FIX = (
    "import the vote table with the images (`emotionops import PATH --votes TABLE.csv`), "
    "then `emotionops version-data`; or set train.targets hard"
)


class TrainingDataError(EmotionOpsError, ValueError):
    """The split CSV or one of the images it names cannot be used for training."""


@dataclass(frozen=True)
class SplitArrays:
    """Decoded images (uint8, [n, S, S, 1]) and integer labels of one split; `votes` the
    rows' annotator votes by label (None: none; all None when split.csv has no votes
    column), `targets` soft target vectors [n, k] when train.targets is votes."""

    images: np.ndarray
    labels: np.ndarray
    paths: list[str] = field(default_factory=list)
    votes: list[dict[str, int] | None] = field(default_factory=list)
    targets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Datasets:
    """tf.data pipelines per split plus what the run logs about them."""

    train: tf.data.Dataset
    val: tf.data.Dataset | None
    test: tf.data.Dataset | None
    arrays: dict[str, SplitArrays]
    train_batch_size: int
    labels: list[str]
    image_size: int
    steps_per_epoch: int = 1  # batches per epoch of the endless train stream
    #: train/val images train.targets left out, by why (n_train_dropped_no_votes, ..._no_target,
    #: n_val_dropped_...)
    dropped: dict[str, int] = field(default_factory=dict)

    def count(self, split: str) -> int:
        return len(self.arrays[split])


def even_batch_size(requested: int, n: int) -> int:
    """Largest even batch <= min(requested, n): odd training batches crash TF 2.21 + oneDNN."""
    if n < 2:
        raise TrainingDataError(
            f"the train split has {n} image(s); training needs at least 2 "
            "(batches must have an even size)"
        )
    size = min(requested, n)
    return size - (size % 2)


def read_split_csv(split_csv: Path, labels: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
    """Rows of the split CSV grouped by split as (relative path, label index)."""
    return {
        split: [(path, label) for path, label, _ in rows]
        for split, rows in _split_rows(split_csv, labels).items()
    }


def read_split_votes(
    split_csv: Path, labels: Sequence[str]
) -> dict[str, list[dict[str, int] | None]]:
    """Each row's annotator votes by label ({'happy': 8, 'neutral': 1, '-': 1}; '-': not an
    emotion), grouped by split in read_split_csv's (and load_arrays') row order; None for a
    row without votes, and for every row of a split file without a `votes` column. The
    FER+ ruler on the test split: dataset.votes.majority(votes, labels) per test row."""
    return {
        split: [votes for _, _, votes in rows]
        for split, rows in _split_rows(split_csv, labels).items()
    }


def _split_rows(
    split_csv: Path, labels: Sequence[str]
) -> dict[str, list[tuple[str, int, dict[str, int] | None]]]:
    """(relative path, label index, votes) per split; errors name the line."""
    from emotionops.dataset.votes import VoteTableError, decode_votes

    split_csv = Path(split_csv)
    if not split_csv.is_file():
        raise TrainingDataError(f"{split_csv}: split file not found")
    index = {label: i for i, label in enumerate(labels)}
    rows: dict[str, list[tuple[str, int, dict[str, int] | None]]] = {s: [] for s in SPLITS}
    with split_csv.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise TrainingDataError(
                f"{split_csv}: missing column(s) {missing}; expected path,label,split,sha256"
            )
        for line_no, row in enumerate(reader, start=2):
            label, split = row["label"].strip(), row["split"].strip()
            if label not in index:
                raise TrainingDataError(
                    f"{split_csv}:{line_no}: label {label!r} is not in the label set "
                    f"{list(labels)} (params 'labels')"
                )
            if split not in rows:
                raise TrainingDataError(
                    f"{split_csv}:{line_no}: split {split!r} is not one of {list(SPLITS)}"
                )
            try:
                votes = decode_votes(row.get(VOTES_COLUMN))
            except VoteTableError as exc:
                raise TrainingDataError(f"{split_csv}:{line_no}: {exc}") from None
            rows[split].append((row["path"].strip(), index[label], votes))
    return rows


def decode_image(path: Path, image_size: int) -> np.ndarray:
    """One grayscale image as uint8 [S, S, 1]; errors name the file."""
    if not path.is_file():
        raise TrainingDataError(f"{path}: image file listed in the split CSV does not exist")
    try:
        with Image.open(path) as img:
            gray = img.convert("L")
            if gray.size != (image_size, image_size):
                gray = gray.resize((image_size, image_size), Image.Resampling.BILINEAR)
            array = np.asarray(gray, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise TrainingDataError(f"{path}: cannot decode image ({exc})") from exc
    return array[:, :, None]


def load_arrays(
    split_csv: Path, faces_root: Path, labels: Sequence[str], image_size: int
) -> dict[str, SplitArrays]:
    """Decode every image the split CSV names, per split."""
    faces_root = Path(faces_root)
    out: dict[str, SplitArrays] = {}
    for split, rows in _split_rows(split_csv, labels).items():
        images = np.zeros((len(rows), image_size, image_size, 1), dtype=np.uint8)
        for i, (rel, _, _) in enumerate(rows):
            images[i] = decode_image(faces_root / rel, image_size)
        out[split] = SplitArrays(
            images=images,
            labels=np.asarray([lab for _, lab, _ in rows], dtype=np.int32),
            paths=[rel for rel, _, _ in rows],
            votes=[votes for _, _, votes in rows],
        )
    return out


def resolve_targets(targets: str, split_csv: Path) -> str:
    """train.targets `auto`: votes when some train row of the split file carries annotator
    votes (an import with `--votes`), else hard. Other values are returned as they are."""
    if targets != "auto":
        return targets
    if not split_csv.is_file():
        return "hard"  # load_arrays names the missing file
    with split_csv.open(newline="", encoding="utf-8") as fh:
        rows = csv.DictReader(fh)
        if VOTES_COLUMN not in (rows.fieldnames or []):
            return "hard"
        has_votes = any(r.get(VOTES_COLUMN) and r.get("split") == "train" for r in rows)
    return "votes" if has_votes else "hard"


def apply_targets(
    split: SplitArrays, targets: str, labels: Sequence[str], name: str = "train"
) -> tuple[SplitArrays, dict[str, int]]:
    """Split `name` as train.targets reads it, and how many images it dropped, by why.

    hard: as it is (folder labels). majority: each image's label becomes the FER+ majority
    of its votes (dataset.votes.majority). votes: `targets` become the vote distributions
    over the labels (dataset.votes.vote_distribution, FER+'s "probability" scheme) and
    `labels` their argmax, which is what class weights, balance `sample` and Keras' train
    accuracy count by (a soft target's class is its largest share). Images without votes
    (n_{name}_dropped_no_votes) or whose votes give no target in the label set: no majority,
    or only votes outside the labels (n_{name}_dropped_no_target) are dropped."""
    from emotionops.dataset.votes import majority, vote_distribution

    if targets == "hard":
        return split, {}
    if targets not in ("majority", "votes"):
        raise TrainingDataError(
            f"unknown train.targets {targets!r} (hard | majority | votes; auto is resolved "
            "first: resolve_targets)"
        )
    if len(split) and not any(v is not None for v in split.votes):
        raise TrainingDataError(
            f"train.targets {targets} needs annotator votes, and none of the {len(split)} "
            f"{name} images has any (split.csv has no `votes`): {VOTES_FIX}"
        )
    keep: list[int] = []
    new_labels: list[int] = []
    soft: list[np.ndarray] = []
    no_votes = no_target = 0
    for i, votes in enumerate(split.votes):
        if votes is None:
            no_votes += 1
            continue
        if targets == "majority":
            label = majority(votes, labels)
            if label is None:
                no_target += 1
                continue
            new_labels.append(labels.index(label))
        else:
            dist = vote_distribution(votes, labels)
            if dist is None:
                no_target += 1
                continue
            soft.append(dist)
            new_labels.append(int(np.argmax(dist)))
        keep.append(i)
    if not keep:
        raise TrainingDataError(
            f"train.targets {targets} left no {name} image: {no_votes} have no votes and "
            f"{no_target} votes give no target in the labels {list(labels)}"
        )
    idx = np.asarray(keep, dtype=np.int64)
    kept = SplitArrays(
        images=split.images[idx],
        labels=np.asarray(new_labels, dtype=np.int32),
        paths=[split.paths[i] for i in keep],
        votes=[split.votes[i] for i in keep],
        targets=np.stack(soft).astype(np.float32) if soft else None,
    )
    return kept, {f"n_{name}_dropped_no_votes": no_votes, f"n_{name}_dropped_no_target": no_target}


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """n / (k * count_c) per class (sklearn's "balanced"), 0 for classes absent from train: a
    rare emotion's errors then cost as much in total as a common one's. With soft targets
    (train.targets votes) `y` is each target's argmax: Keras also weighs a target vector
    (soft, smoothed or mixed up) by its argmax class, so the weights count what they weigh."""
    counts = np.bincount(np.asarray(y, dtype=int), minlength=n_classes)
    present = int((counts > 0).sum())
    return {
        c: float(len(y) / (present * counts[c])) if counts[c] else 0.0 for c in range(n_classes)
    }


def augmenter(params: AugmentParams | None, seed: int) -> Any:
    """A Keras preprocessing stack applied per batch in tf.data (training only); None when
    every transform is off. Works on raw 0..255 pixels (the model rescales later)."""
    if params is None:
        return None
    import keras
    from keras import layers

    steps: list[Any] = []
    if params.flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed))
    if params.rotation:
        steps.append(layers.RandomRotation(params.rotation, fill_mode="reflect", seed=seed + 1))
    if params.shift:
        steps.append(
            layers.RandomTranslation(params.shift, params.shift, fill_mode="reflect", seed=seed + 2)
        )
    if params.zoom:
        steps.append(layers.RandomZoom(params.zoom, fill_mode="reflect", seed=seed + 3))
    if params.brightness:
        steps.append(
            layers.RandomBrightness(params.brightness, value_range=(0, 255), seed=seed + 4)
        )
    if params.contrast:
        steps.append(layers.RandomContrast(params.contrast, value_range=(0, 255), seed=seed + 5))
    return keras.Sequential(steps, name="augment") if steps else None


def mixup(batches: tf.data.Dataset, alpha: float, seed: int) -> tf.data.Dataset:
    """mixup (Zhang et al., 2018) on a stream of (faces, target vectors) batches: each face is
    blended with another face of its batch, and its target with that face's target, by one
    weight per face drawn from Beta(alpha, alpha) (small alpha: most weights near 0 or 1).
    The draws are stateless, keyed by seed and batch index, so a seed repeats its batches."""
    import tensorflow as tf

    def blend(step: tf.Tensor, batch: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        x, y = batch
        n = tf.shape(x)[0]
        weight_key, partner_key = tf.unstack(
            tf.random.experimental.stateless_split(tf.stack([tf.constant(seed, tf.int64), step]))
        )
        g = tf.random.stateless_gamma([2, n], seed=weight_key, alpha=alpha)
        lam = tf.math.divide_no_nan(g[0], g[0] + g[1])  # Beta(alpha, alpha) from two gammas
        partner = tf.argsort(tf.random.stateless_uniform([n], seed=partner_key))
        lam_x = tf.cast(tf.reshape(lam, [-1, 1, 1, 1]), x.dtype)
        lam_y = tf.cast(tf.reshape(lam, [-1, 1]), y.dtype)
        return (
            lam_x * x + (1 - lam_x) * tf.gather(x, partner),
            lam_y * y + (1 - lam_y) * tf.gather(y, partner),
        )

    return batches.enumerate().map(blend)


def make_datasets(
    split_csv: Path,
    faces_root: Path,
    labels: Sequence[str],
    image_size: int,
    batch_size: int,
    seed: int,
    augment: bool | AugmentParams = True,
    balance: str = "none",
    train_targets: Callable[[SplitArrays], np.ndarray] | None = None,
    targets: str = "hard",
) -> Datasets:
    """Cached, prefetched datasets of float32 RAW pixel values 0..255 (the model rescales).

    `augment`: True = horizontal flips only, False = none, or AugmentParams. `balance`
    "sample" draws every class equally often (infinite stream, `steps_per_epoch` batches per
    epoch); "class_weight" and "none" leave the data as is (the weights go to fit).
    `train_targets` maps the decoded train split to one target vector per image (soft labels,
    `distill.soft_targets`): the train stream then yields those instead of label indices.
    `targets` (train.targets, see `apply_targets`) reads the train split's votes first; with
    `votes` the train stream yields the vote distributions. With majority or votes, val
    is scored on the FER+ majority too (its images without one are dropped, counted as
    n_val_dropped_*): the epoch kept and early stopping then follow the ruler the
    registry gate decides on, not the folder labels the votes were brought in to correct.
    test keeps its rows and folder labels: evaluation reads both rulers from it."""
    import tensorflow as tf

    arrays = load_arrays(split_csv, faces_root, labels, image_size)
    targets = resolve_targets(targets, split_csv)
    arrays["train"], dropped = apply_targets(arrays["train"], targets, labels)
    if targets != "hard" and len(arrays["val"]):
        arrays["val"], val_dropped = apply_targets(arrays["val"], "majority", labels, "val")
        dropped.update(val_dropped)
    a = arrays["train"]
    n_train = len(a)
    train_batch = even_batch_size(batch_size, n_train)
    train_y = a.labels if a.targets is None else a.targets
    if train_targets is not None:
        train_y = np.asarray(train_targets(a), dtype=np.float32)
        if train_y.shape != (n_train, len(labels)):
            raise TrainingDataError(
                f"train targets have shape {train_y.shape}, expected ({n_train}, {len(labels)})"
            )

    def base(split: str) -> tf.data.Dataset:
        y = train_y if split == "train" else arrays[split].labels
        ds = tf.data.Dataset.from_tensor_slices((arrays[split].images, y))
        return ds.map(lambda x, y: (tf.cast(x, tf.float32), y)).cache()

    # Both train streams are endless: an epoch is this many full batches.
    steps_per_epoch = max(1, n_train // train_batch)
    if balance == "sample":
        present = sorted(set(a.labels.tolist()))
        per_class = [
            tf.data.Dataset.from_tensor_slices((a.images[a.labels == c], train_y[a.labels == c]))
            .map(lambda x, y: (tf.cast(x, tf.float32), y))
            .cache()
            .shuffle(int((a.labels == c).sum()), seed=seed + c, reshuffle_each_iteration=True)
            .repeat()
            for c in present
        ]
        train = tf.data.Dataset.sample_from_datasets(
            per_class, weights=[1 / len(present)] * len(present), seed=seed
        ).batch(train_batch, drop_remainder=True)  # infinite stream: every batch is full
    elif balance in ("none", "class_weight"):
        # One endless, reshuffled stream read by a single iterator for the whole fit (Keras
        # keeps it across epochs when steps_per_epoch is set): re-creating the iterator every
        # epoch was measured to stall the bench for 30-90 s per epoch with both cores idle.
        # Full batches only; a pass may end inside a batch, so every image is still seen
        # once per pass.
        train = (
            base("train")
            .shuffle(n_train, seed=seed, reshuffle_each_iteration=True)
            .repeat()
            .batch(train_batch, drop_remainder=True)
        )
    else:
        raise TrainingDataError(f"unknown balance {balance!r} (none | class_weight | sample)")
    if augment is True:
        augment = AugmentParams(rotation=0, shift=0, zoom=0, brightness=0, contrast=0)
    stack = augmenter(augment, seed) if augment else None
    if stack is not None:
        # Sequential on purpose: the layers draw from a stateful seed generator, and parallel
        # calls would consume it in a racy order (runs with one seed then differ). Each call
        # transforms a whole batch with vectorised ops, and prefetch overlaps it with training.
        train = train.map(lambda x, y: (stack(x, training=True), y))
    train = train.prefetch(tf.data.AUTOTUNE)

    def evaluation(split: str) -> tf.data.Dataset | None:
        if not len(arrays[split]):
            return None
        # Forward passes are safe on odd batches; keep every image so metrics are exact.
        return base(split).batch(batch_size).prefetch(tf.data.AUTOTUNE)

    return Datasets(
        train=train,
        val=evaluation("val"),
        test=evaluation("test"),
        arrays=arrays,
        train_batch_size=train_batch,
        labels=list(labels),
        image_size=image_size,
        steps_per_epoch=steps_per_epoch,
        dropped=dropped,
    )
