"""Per-image annotator votes (FER+ and alike): reading a vote table, and what training and
evaluation take from it.

A vote table is a CSV with a `file` column (the image's path relative to the imported
folder, e.g. `train/angry/fer0000000.png`) and one count column per voted class. FER+'s own
table (`ferplus.csv`: neutral, happiness, ..., contempt, unknown, NF) is recognised by its
columns and mapped onto the project's label names; any other table names its classes by
label, or maps them with `mapping` ({column: label, or None for "not an emotion"}).

Two readings of one image's votes (Barsoum et al. 2016, "Training deep networks for facial
expression recognition with crowd-sourced label distribution", FER+'s protocol):
- majority: drop single votes as outliers, then the class with more than half of the
  remaining votes, unless it is not an emotion (unknown, not a face). No majority: none.
- distribution ("probability" scheme): the votes (single votes dropped) restricted to the
  label set, normalised. Votes outside the set (contempt when it is not a label, unknown,
  not a face) are not counted; an image with no vote left in the set has none.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotionops.dataset.split import DatasetError

FILE_COLUMN = "file"
#: FER+'s vote columns (ferplus.csv), and the project label each one stands for.
FERPLUS_CLASSES: dict[str, str | None] = {
    "neutral": "neutral",
    "happiness": "happy",
    "surprise": "surprise",
    "sadness": "sad",
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "contempt": "contempt",
    "unknown": None,  # the annotator could not tell
    "NF": None,  # not a face
}
#: Columns of FER+'s table that are not votes.
FERPLUS_INFO = ("split", "ferplus_name")
#: A class with this many votes or fewer is an outlier in FER+'s protocol.
OUTLIER_VOTES = 1


class VoteTableError(DatasetError):
    """A vote table that cannot be used as it is; the message names the row or column."""


#: The key under which votes for "not an emotion" classes (unknown, not a face) are kept.
NOT_AN_EMOTION = "-"


@dataclass(frozen=True)
class VoteTable:
    """Votes per image file, by class (the table's columns), and how classes map to labels."""

    classes: tuple[str, ...]
    mapping: dict[str, str | None]  # class -> project label; None: not an emotion
    votes: dict[str, tuple[int, ...]]  # file -> counts in `classes` order
    skipped: list[str] = field(default_factory=list)  # "row N (file): why", with --skip-bad

    def counts(self, file: str) -> dict[str, int] | None:
        """The file's raw votes by label ({'happy': 8, 'neutral': 1, '-': 1}: '-' collects
        the not-an-emotion classes); None when the table has no row for it. This is what the
        import carries into images.csv, split.csv (column `votes`) and the warehouse."""
        row = self.votes.get(file)
        if row is None:
            return None
        out: dict[str, int] = {}
        for cls, n in zip(self.classes, row, strict=True):
            key = self.mapping[cls] or NOT_AN_EMOTION
            out[key] = out.get(key, 0) + n
        return {k: v for k, v in out.items() if v}


def encode_votes(counts: Mapping[str, int] | None) -> str:
    """Vote counts as the compact JSON stored in CSV columns and the warehouse ('' = none)."""
    return "" if not counts else json.dumps(dict(sorted(counts.items())), separators=(",", ":"))


def decode_votes(text: str | None) -> dict[str, int] | None:
    """The inverse of encode_votes; raises VoteTableError on a malformed value."""
    if not text:
        return None
    try:
        value = json.loads(text)
        counts = {str(k): _count(str(v)) for k, v in value.items()}
    except (ValueError, AttributeError) as exc:
        raise VoteTableError(f"malformed votes {text[:80]!r}: {exc}") from exc
    return counts or None


def _kept(counts: Mapping[str, int]) -> dict[str, int]:
    """FER+'s outlier rule: a class with a single vote is dropped."""
    return {k: n for k, n in counts.items() if n > OUTLIER_VOTES}


def majority(counts: Mapping[str, int] | None, labels: Sequence[str]) -> str | None:
    """FER+'s majority label: after dropping single votes, the class with more than half of
    the remaining votes, if it is a label of `labels` (not unknown, not a face, not a class
    outside the set); else None."""
    if not counts:
        return None
    kept = _kept(counts)
    total = sum(kept.values())
    if total == 0:
        return None
    top, n = max(kept.items(), key=lambda kv: (kv[1], kv[0]))
    return top if n * 2 > total and top in labels else None


def vote_distribution(counts: Mapping[str, int] | None, labels: Sequence[str]) -> np.ndarray | None:
    """FER+'s "probability" target: the votes left after dropping single votes, restricted to
    `labels`, normalised; None when no vote falls in the set (the image is dropped)."""
    if not counts:
        return None
    kept = _kept(counts)
    votes = np.array([kept.get(label, 0) for label in labels], np.float32)
    total = float(votes.sum())
    return None if total <= 0 else votes / total


def _mapping(columns: Sequence[str], mapping: Mapping[str, str | None] | None,
             known: Sequence[str]) -> tuple[list[str], dict[str, str | None]]:  # fmt: skip
    """The vote columns and their labels: FER+'s when the table has FER+'s columns, else
    each column named by a label or by `mapping` (every other column is an error)."""
    given = dict(mapping or {})
    vote_columns = [c for c in columns if c != FILE_COLUMN and c not in FERPLUS_INFO]
    ferplus = set(FERPLUS_CLASSES) <= set(vote_columns)
    out: dict[str, str | None] = {}
    unmapped = []
    for column in vote_columns:
        if column in given:
            out[column] = given[column]
        elif ferplus and column in FERPLUS_CLASSES:
            out[column] = FERPLUS_CLASSES[column]
        elif column in known:
            out[column] = column
        else:
            unmapped.append(column)
    if unmapped:
        raise VoteTableError(
            f"vote columns {unmapped} are neither labels ({list(known)}) nor mapped: map each "
            "to a label or to nothing, e.g. --vote-map 'anger=angry,unknown='"
        )
    bad = {c: t for c, t in out.items() if t is not None and t not in known}
    if bad:
        raise VoteTableError(f"vote columns mapped to unknown labels: {bad}; labels: {list(known)}")
    return vote_columns, out


def _count(text: str | None) -> int:
    try:
        value = float(text) if text not in (None, "") else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or not value.is_integer():
        raise ValueError(f"{text!r} is not a vote count (a whole number >= 0)")
    return int(value)


def read_vote_table(
    path: Path,
    known_labels: Sequence[str],
    mapping: Mapping[str, str | None] | None = None,
    skip_bad: bool = False,
) -> VoteTable:
    """Read and check a vote table. `known_labels`: every label a column may map to (the
    label set plus the classes the dataset knows, e.g. FER2013's seven and contempt). A bad
    row (non-numeric or negative count, no vote at all, a file twice) raises VoteTableError
    naming it, or with `skip_bad` is left out and listed in `skipped`."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise VoteTableError(f"cannot read the vote table {path}: {exc.strerror}") from exc
    with handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if FILE_COLUMN not in columns:
            raise VoteTableError(
                f"{path}: no `{FILE_COLUMN}` column (the image's path in the imported folder); "
                f"columns: {columns}"
            )
        classes, class_map = _mapping(columns, mapping, known_labels)
        votes: dict[str, tuple[int, ...]] = {}
        skipped: list[str] = []
        for number, row in enumerate(reader, start=2):  # row 1 is the header
            file = (row.get(FILE_COLUMN) or "").strip()
            try:
                if not file:
                    raise ValueError("no file name")
                if file in votes:
                    raise ValueError("the file has an earlier row")
                counts = tuple(_count(row.get(c)) for c in classes)
                if sum(counts) == 0:
                    raise ValueError("no votes")
            except ValueError as exc:
                where = f"{path.name} row {number}" + (f" ({file})" if file else "")
                if not skip_bad:
                    raise VoteTableError(
                        f"{where}: {exc} (--skip-bad leaves such rows out)"
                    ) from exc
                skipped.append(f"{where}: {exc}")
                continue
            votes[file] = counts
    if not votes:
        raise VoteTableError(f"{path}: no usable rows")
    return VoteTable(tuple(classes), class_map, votes, skipped)


def check_files(table: VoteTable, files: Iterable[str], skip_bad: bool = False) -> list[str]:
    """Every voted file must be an image of the imported folder: the unknown ones raise
    (naming the first few), or with `skip_bad` are returned to be listed."""
    unknown = sorted(set(table.votes) - set(files))
    if unknown and not skip_bad:
        raise VoteTableError(
            f"{len(unknown)} voted files are not in the imported folder, e.g. {unknown[:3]} "
            "(paths are relative to the folder; --skip-bad leaves them out)"
        )
    return unknown


#: The optional split.csv (and images.csv) column carrying an image's votes (encode_votes).
VOTES_COLUMN = "votes"


def split_votes(split_csv: Path, split: str | None = None) -> dict[str, dict[str, int]]:
    """Votes by image path (split.csv's `path`) for the rows of `split` (all when None); empty
    when the file has no `votes` column or no row carries votes (a dataset without them).
    A malformed value raises VoteTableError naming the line."""
    out: dict[str, dict[str, int]] = {}
    with Path(split_csv).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if VOTES_COLUMN not in (reader.fieldnames or []):
            return out
        for line, row in enumerate(reader, start=2):
            if split is not None and (row.get("split") or "").strip() != split:
                continue
            try:
                counts = decode_votes((row.get(VOTES_COLUMN) or "").strip())
            except VoteTableError as exc:
                raise VoteTableError(f"{split_csv}:{line}: {exc}") from exc
            if counts:
                out[(row.get("path") or "").strip()] = counts
    return out


def majority_indices(
    votes: Sequence[Mapping[str, int] | None], labels: Sequence[str]
) -> np.ndarray:
    """Each image's FER+ majority label as an index into `labels`, -1 where it has none (no
    votes, no majority, or a majority outside the label set): the FER+ ruler's truth."""
    index = {label: i for i, label in enumerate(labels)}
    picked = (majority(counts, labels) for counts in votes)
    return np.asarray([index[m] if m is not None else -1 for m in picked], dtype=np.int64)
