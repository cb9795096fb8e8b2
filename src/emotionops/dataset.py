"""Dataset versions: a deterministic split by content hash, statistics, and DVC helpers.

The split of an image depends only on its sha256 and a salt, so adding images never moves
an existing test image into training. The dataset version id is the hash of the split file,
which lists every image's content hash and split.
"""

from __future__ import annotations

import hashlib
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


class DatasetError(EmotionOpsError):
    """The dataset is empty, inconsistent, or DVC failed."""


def assign_split(sha256: str, params: SplitParams) -> str:
    """train/val/test from a salted hash of the image's content hash (stable as data grows)."""
    digest = hashlib.sha256(f"{params.salt}:{sha256}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") / 2**64
    if bucket < params.test_fraction:
        return "test"
    if bucket < params.test_fraction + params.val_fraction:
        return "val"
    return "train"


def build_split(
    image_rows: Iterable[Mapping[str, Any]], params: SplitParams, labels: list[str]
) -> list[dict[str, str]]:
    """Split rows (path,label,split,sha256) for the accepted images, sorted for stable output."""
    rows = [
        {
            "path": str(r["face_path"]),
            "label": str(r["label"]),
            "split": assign_split(str(r["sha256"]), params),
            "sha256": str(r["sha256"]),
        }
        for r in image_rows
        if r.get("status") == "accepted" and r.get("label") in labels
    ]
    if not rows:
        raise DatasetError("no accepted face images: nothing to split (check the clean step)")
    return sorted(rows, key=lambda r: (r["label"], r["sha256"]))


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


def ensure_dvc_project(project_dir: Path, remote_url: str | None, default_remote: Path) -> str:
    """Initialise DVC if needed and make sure a default remote exists; returns the remote URL.

    `remote_url` (settings) overrides the committed default in `.dvc/config.local`, so a
    user's S3 bucket never ends up in git."""
    if not (project_dir / ".dvc").is_dir():
        scm = (project_dir / ".git").exists()
        _dvc(project_dir, "init", "-q", *(() if scm else ("--no-scm",)))
    if remote_url:
        _dvc(project_dir, "remote", "add", "--local", "-d", "-f", "override", remote_url)
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
