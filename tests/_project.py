"""A tiny EmotionOps project in a temporary folder (stdlib only: used from both venvs).

It holds the repository's dvc.yaml, a `src` link (dvc.yaml lists code deps) and a
params.yaml shrunk to a few images per label and one epoch, so the whole pipeline runs in
about a minute.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TINY_OVERRIDES = {
    "per_label": "8",
    "images_per_label": "8",
    "page_size": "4",
    "epochs": "1",
    "warmup_epochs": "0",
    "train.batch_size": "8",
    "demo_video_seconds": "4",
    "floor_macro_f1": "0",  # a few drawn faces and one epoch: no real model to hold to a floor
}


def tiny_params_text() -> str:
    """The repository's params.yaml with the TINY_OVERRIDES values (keeps its comments)."""
    text = (REPO / "params.yaml").read_text()
    for dotted, value in TINY_OVERRIDES.items():
        section, _, key = dotted.rpartition(".")
        # `section.key`: the key inside that top-level section only
        start = re.search(rf"(?m)^{section}:", text).end() if section else 0
        end = re.search(r"(?m)^\S", text[start:]) if section else None
        stop = start + end.start() if end else len(text)
        part, n = re.subn(rf"(?m)^(\s+{key}:\s*)[^\s#]+", rf"\g<1>{value}", text[start:stop])
        assert n == 1, f"params.yaml has no unique key {dotted}"
        text = text[:start] + part + text[stop:]
    return text


def make_tiny_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    (root / "params.yaml").write_text(tiny_params_text())
    (root / "src").symlink_to(REPO / "src")
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    """Poll `url` until it answers 200 (servers started as child processes)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s: {last}")


@contextmanager
def moto_s3(moto_server: Path) -> Iterator[str]:
    """A real S3 API (moto_server, in memory) on a free port; yields its endpoint URL."""
    port = free_port()
    proc = subprocess.Popen(
        [str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_http(endpoint + "/moto-api/", timeout_s=30)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)
