"""DVC helpers: the project's remote, `dvc repro`/`push`, and the hashes of versioned outputs.

DVC runs as the ML environment's own `dvc` in a subprocess (DVC allows one writer at a time;
the caller commits `dvc.lock` to git when it means to)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from emotionops.dataset.split import DatasetError

log = logging.getLogger(__name__)


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


def run_dvc(project_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
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
        run_dvc(project_dir, "init", "-q", *(() if scm else ("--no-scm",)))
    if remote_url:
        run_dvc(project_dir, "remote", "add", "--local", "-d", "-f", "override", remote_url)
        if endpoint_url:  # S3-compatible services (MinIO, moto, Ceph): credentials stay in env
            run_dvc(
                project_dir, "remote", "modify", "--local", "override", "endpointurl", endpoint_url
            )
        return remote_url
    listed = run_dvc(project_dir, "remote", "list").stdout.split()
    if not listed:
        default_remote.mkdir(parents=True, exist_ok=True)
        run_dvc(project_dir, "remote", "add", "--local", "-d", "local", str(default_remote))
        return str(default_remote)
    return listed[1] if len(listed) > 1 else listed[0]


def reproduce(project_dir: Path, *stages: str) -> str:
    """`dvc repro` for the given stages; returns DVC's report (says when nothing changed)."""
    return run_dvc(project_dir, "repro", *stages).stdout


def push(project_dir: Path) -> str:
    return run_dvc(project_dir, "push").stdout


def status(project_dir: Path) -> str:
    return run_dvc(project_dir, "status").stdout
