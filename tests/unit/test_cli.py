"""The CLI as a new user meets it: helpful --help, and one clear line (exit 2) for every
mistake a user can make, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

EMOTIONOPS = Path(sys.executable).with_name("emotionops")
REPO = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EMOTIONOPS_")}
    base.update({"EMOTIONOPS_PROJECT_DIR": str(tmp_path), "COLUMNS": "200", **env})
    return subprocess.run(
        [str(EMOTIONOPS), *args],
        cwd=tmp_path,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    return tmp_path


def test_help_lists_every_stage(project) -> None:
    result = run(project, "--help")
    assert result.returncode == 0
    for command in (
        "scrape",
        "download",
        "clean",
        "split",
        "version-data",
        "train",
        "edge",
        "demo",
    ):
        assert command in result.stdout


def _assert_clear_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    flat = " ".join(result.stderr.split())
    for needle in needles:
        assert needle in flat, flat


def test_no_chromium(project) -> None:
    (project / "data" / "manifests").mkdir(parents=True)
    result = run(
        project, "scrape", "--search-url", "http://127.0.0.1:9",
        EMOTIONOPS_CHROMIUM_BINARY="/nonexistent/chromium",
    )  # fmt: skip
    _assert_clear_error(result, "/nonexistent/chromium", "make setup")


def test_port_in_use(project) -> None:
    store = project / "data" / "mlflow"
    store.mkdir(parents=True)
    (store / "mlflow.db").touch()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        _assert_clear_error(run(project, "mlflow-server", "--port", str(port)), f"port {port}")


def test_empty_image_folder(project) -> None:
    empty = project / "empty"
    empty.mkdir()
    _assert_clear_error(
        run(project, "standin", "serve", "--root", str(empty), "--port", "0"), str(empty)
    )


def test_no_tracking_uri(project) -> None:
    _assert_clear_error(run(project, "train"), "EMOTIONOPS_MLFLOW_TRACKING_URI")


def test_bad_run_date(project) -> None:
    _assert_clear_error(run(project, "download", "--run-date", "2026-13-01"), "YYYY-MM-DD")


def test_params_out_of_range(project) -> None:
    text = (project / "params.yaml").read_text().replace("batch_size: 128", "batch_size: 33")
    (project / "params.yaml").write_text(text)
    _assert_clear_error(run(project, "split"), "train.batch_size", "even")


def test_bad_settings(project) -> None:
    _assert_clear_error(
        run(project, "split", EMOTIONOPS_ENVIRONMENT="prod"), "EMOTIONOPS_ENVIRONMENT"
    )
