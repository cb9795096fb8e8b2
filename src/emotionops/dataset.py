"""Dataset versions: a deterministic split by content hash, statistics, and DVC helpers.

The split of an image depends only on its sha256 and a salt, so adding images never moves
an existing test image into training. The dataset version id is the hash of the split file,
which lists every image's content hash and split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emotionops.csvio import write_records
from emotionops.errors import EmotionOpsError
from emotionops.params import SplitParams

SPLITS = ("train", "val", "test")

log = logging.getLogger(__name__)


class DatasetError(EmotionOpsError):
    """The dataset is empty, inconsistent, or DVC failed."""


HELD_OUT = {"train": 0, "val": 1, "test": 2}  # how far a split is kept from training
#: Split hints of imported images (see emotionops.importers) -> splits they may land in.
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
    """Split rows (path,label,split,sha256) for the accepted images, sorted for stable output.

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
    rows = []
    for r in accepted:
        sha = str(r["sha256"])
        rows.append(
            {
                "path": str(r["face_path"]),
                "label": str(r["label"]),
                "split": assign_split(sha, params, hints.get(sha, "")),
                "sha256": sha,
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


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


def dvc_output_hashes(
    project_dir: Path, outs: Iterable[str] = ("data/faces", "data/split.csv")
) -> dict[str, str]:
    """DVC's md5 of the given stage outputs, read from dvc.lock ({} when not versioned yet):
    with them, `dvc checkout`/`dvc pull` can bring back the exact images a run saw.

    A lock left by an earlier `dvc repro` may describe other data (e.g. after a plain
    `emotionops split`): when a file output's md5 differs from the file here, {} (a wrong
    hash in a run's tags is worse than none). Folder hashes are vouched for by the split
    file, which lists every image with its sha256."""
    import yaml

    lock = Path(project_dir) / "dvc.lock"
    if not lock.is_file():
        return {}
    try:
        data = yaml.safe_load(lock.read_text()) or {}
    except yaml.YAMLError:
        return {}
    wanted, found = set(outs), {}
    for stage in (data.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") in wanted and out.get("md5"):
                found[out["path"]] = str(out["md5"])
    for path, md5 in found.items():
        if md5.endswith(".dir"):
            continue
        here = Path(project_dir) / path
        actual = hashlib.md5(here.read_bytes()).hexdigest() if here.is_file() else None
        if actual != md5:
            log.warning("dvc.lock is stale for %s (run `dvc repro`): no DVC hashes logged", path)
            return {}
    return found


# DVC ------------------------------------------------------------------------------------


def _dvc(project_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the ML environment's DVC in `project_dir` with the environment's bin on PATH, so
    dvc.yaml commands (`emotionops ...`) resolve to this installation."""
    bindir = Path(sys.executable).parent
    dvc = shutil.which("dvc", path=str(bindir)) or shutil.which("dvc")
    if dvc is None:
        raise DatasetError("dvc is not installed in this environment: run `make setup`")
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [dvc, *args], cwd=project_dir, env=env, capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        raise DatasetError(f"`dvc {' '.join(args)}` failed:\n{proc.stdout}{proc.stderr}".strip())
    return proc


def ensure_dvc_project(
    project_dir: Path,
    remote_url: str | None,
    default_remote: Path,
    endpoint_url: str | None = None,
) -> str:
    """Initialise DVC if needed and make sure a default remote exists; returns the remote URL.

    `remote_url` (settings) overrides the committed default in `.dvc/config.local`, so a
    user's S3 bucket never ends up in git; `endpoint_url` points an s3:// remote at an
    S3-compatible server. S3 credentials come from the usual AWS environment variables or
    profile (read by dvc-s3), never from params or settings files in git."""
    if not (project_dir / ".dvc").is_dir():
        scm = (project_dir / ".git").exists()
        _dvc(project_dir, "init", "-q", *(() if scm else ("--no-scm",)))
    if remote_url:
        _dvc(project_dir, "remote", "add", "--local", "-d", "-f", "override", remote_url)
        if endpoint_url:  # S3-compatible services (MinIO, moto, Ceph): credentials stay in env
            _dvc(
                project_dir, "remote", "modify", "--local", "override", "endpointurl", endpoint_url
            )
        return remote_url
    listed = _dvc(project_dir, "remote", "list").stdout.split()
    if not listed:
        default_remote.mkdir(parents=True, exist_ok=True)
        _dvc(project_dir, "remote", "add", "--local", "-d", "local", str(default_remote))
        return str(default_remote)
    return listed[1] if len(listed) > 1 else listed[0]


def reproduce(project_dir: Path, *stages: str) -> str:
    """`dvc repro` for the given stages; returns DVC's report (says when nothing changed)."""
    return _dvc(project_dir, "repro", *stages).stdout


def push(project_dir: Path) -> str:
    return _dvc(project_dir, "push").stdout


def status(project_dir: Path) -> str:
    return _dvc(project_dir, "status").stdout
