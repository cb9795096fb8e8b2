"""Dataset versions: a deterministic split by content hash and its statistics.

The split of an image depends only on its sha256 and a salt, so adding images never moves
an existing test image into training. The dataset version id is the hash of the split file,
which lists every image's content hash and split.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emotionops.errors import EmotionOpsError
from emotionops.files import atomic_write, write_records
from emotionops.params import SplitParams

SPLITS = ("train", "val", "test")
SPLIT_COLUMNS = ("path", "label", "split", "sha256")  # split.csv, one row per face
#: Optional split.csv column: the image's annotator votes (dataset.votes.encode_votes; ''
#: when it has none). Written only when some image carries votes, so the split file (and the
#: dataset version id, its hash) of a dataset without votes is what it always was.
VOTES_COLUMN = "votes"

log = logging.getLogger(__name__)


class DatasetError(EmotionOpsError):
    """The dataset is empty, inconsistent, or DVC failed."""


HELD_OUT = {"train": 0, "val": 1, "test": 2}  # how far a split is kept from training
#: Split hints of imported images (see emotionops.dataset.importers) -> splits they may land in.
HINTS = {
    "": ("train", "val", "test"),
    "train": ("train",),
    "val": ("val",),
    "test": ("test",),
    "trainval": ("train", "val"),
}


def _bucket(sha256: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(sha256: str, params: SplitParams, hint: str = "") -> str:
    """train/val/test from a salted hash of the image's content hash (stable as data grows).

    `hint` "trainval" (an official training set) keeps the image out of test: train or val,
    in the configured val : train proportion, again by hash only."""
    if hint not in HINTS:
        raise DatasetError(f"unknown split hint {hint!r}; expected one of {sorted(HINTS)}")
    if hint in ("train", "val", "test"):
        return hint
    bucket = _bucket(sha256, params.salt)
    if hint == "trainval":  # val : train in the proportion the params give them
        return "val" if bucket < params.val_fraction / (1 - params.test_fraction) else "train"
    if bucket < params.test_fraction:
        return "test"
    if bucket < params.test_fraction + params.val_fraction:
        return "val"
    return "train"


def build_split(
    image_rows: Iterable[Mapping[str, Any]],
    params: SplitParams,
    labels: list[str],
    near_dup: tuple[int, int] | None = None,
    hints: Mapping[str, str] | None = None,
) -> list[dict[str, str]]:
    """Split rows (path,label,split,sha256[,votes]) for the accepted images, sorted for
    stable output; `votes` (images.csv's, '' when none) only when some image has votes.

    `hints` (sha256 -> train | val | test | trainval) carry an imported dataset's official
    splits. With `near_dup` = (max pHash distance, max dHash distance), near-duplicate images
    (by the `phash`/`dhash` columns) never straddle splits: a group whose members would land
    in different splits goes, whole, to the most held-out of them (test > val > train). So
    adding images never moves an existing test image into val or train: a test member keeps
    its group in test. A member whose hint forbids that split (an official training image
    that near-duplicates a test image) is left out of the split file, with a warning."""
    hints = hints or {}
    accepted = [r for r in image_rows if r.get("status") == "accepted" and r.get("label") in labels]
    if not accepted:
        raise DatasetError("no accepted face images: nothing to split (check the clean step)")
    with_votes = any(r.get(VOTES_COLUMN) for r in accepted)
    rows = []
    for r in accepted:
        sha = str(r["sha256"])
        rows.append(
            {
                "path": str(r["face_path"]),
                "label": str(r["label"]),
                "split": assign_split(sha, params, hints.get(sha, "")),
                "sha256": sha,
                **({VOTES_COLUMN: str(r.get(VOTES_COLUMN) or "")} if with_votes else {}),
            }
        )
    dropped: set[int] = set()
    if near_dup is not None:
        for group in near_duplicate_groups(accepted, *near_dup):
            splits = {rows[i]["split"] for i in group}
            if len(splits) < 2:
                continue
            target = max(splits, key=HELD_OUT.__getitem__)
            for i in group:
                if target in HINTS[hints.get(rows[i]["sha256"], "")]:
                    rows[i]["split"] = target
                else:
                    dropped.add(i)
    if dropped:
        log.warning(
            "%d image(s) left out of the split: near duplicates of held-out images whose "
            "split hint (official training set) forbids moving them there",
            len(dropped),
        )
    kept = [r for i, r in enumerate(rows) if i not in dropped]
    return sorted(kept, key=lambda r: (r["label"], r["sha256"]))


def near_duplicate_groups(
    rows: list[Mapping[str, Any]], max_phash: int, max_dhash: int
) -> list[list[int]]:
    """Indices of rows linked by near-duplicate hashes (transitively), groups of 2 or more.
    Rows without hashes are left out. Pairwise, vectorised: ~1 s for 10k images."""
    import numpy as np

    idx = [i for i, r in enumerate(rows) if r.get("phash") and r.get("dhash")]
    if len(idx) < 2:
        return []
    hashes = np.array(
        [(int(str(rows[i]["phash"]), 16), int(str(rows[i]["dhash"]), 16)) for i in idx],
        np.uint64,
    )
    parent = list(range(len(idx)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a in range(len(idx) - 1):
        dist = np.bitwise_count(hashes[a + 1 :] ^ hashes[a])
        for b in np.flatnonzero((dist[:, 0] <= max_phash) & (dist[:, 1] <= max_dhash)):
            parent[find(a + 1 + int(b))] = find(a)
    groups: dict[int, list[int]] = {}
    for k, i in enumerate(idx):
        groups.setdefault(find(k), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def write_split(rows: list[dict[str, str]], path: Path) -> str:
    """Write the split file and return the dataset version id (hash of its bytes)."""
    write_records(rows, path)
    return dataset_version_id(path)


def dataset_version_id(split_csv: Path) -> str:
    return hashlib.sha256(split_csv.read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class DatasetStats:
    per_label_split: dict[tuple[str, str], int]

    @property
    def total(self) -> int:
        return sum(self.per_label_split.values())

    def count(self, split: str | None = None, label: str | None = None) -> int:
        return sum(
            n
            for (lab, spl), n in self.per_label_split.items()
            if (split is None or spl == split) and (label is None or lab == label)
        )


def stats(split_rows: Iterable[Mapping[str, str]]) -> DatasetStats:
    return DatasetStats(dict(Counter((r["label"], r["split"]) for r in split_rows)))


def stats_summary(split_rows: Iterable[Mapping[str, str]], labels: list[str]) -> dict[str, Any]:
    """Images per label and split (+ each label's share), as DVC metrics
    (`data/dataset_stats.json`): `dvc metrics diff` then shows how a dataset version grew."""
    st = stats(split_rows)
    total = st.total
    return {
        "total": total,
        **{split: st.count(split) for split in SPLITS},
        "labels": {
            label: {
                **{split: st.count(split, label) for split in SPLITS},
                "total": st.count(label=label),
                "share": round(st.count(label=label) / total, 4) if total else 0.0,
            }
            for label in labels
        },
    }


def write_stats(summary: Mapping[str, Any], path: Path) -> Path:
    return atomic_write(path, json.dumps(summary, indent=2) + "\n")


def format_stats(summary: Mapping[str, Any]) -> str:
    """A plain-text table: one line per label, counts per split."""
    lines = [f"{'label':<12}{'train':>8}{'val':>8}{'test':>8}{'total':>8}{'share':>8}"]
    for label, c in summary["labels"].items():
        lines.append(
            f"{label:<12}{c['train']:>8}{c['val']:>8}{c['test']:>8}{c['total']:>8}"
            f"{c['share']:>8.1%}"
        )
    lines.append(
        f"{'all':<12}{summary['train']:>8}{summary['val']:>8}{summary['test']:>8}"
        f"{summary['total']:>8}"
    )
    return "\n".join(lines)
