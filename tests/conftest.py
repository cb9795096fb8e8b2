"""Shared fixtures: real servers started per session, on free ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REAL_DATA = Path(
    os.environ.get("EMOTIONOPS_REAL_DATA", Path(__file__).parents[1] / "../shared/data")
)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server (SQLite + local artifacts); yields its URL."""
    from emotionops.mlflow_server import LocalMlflowServer

    store = tmp_path_factory.mktemp("mlflow")
    with LocalMlflowServer(store) as server:
        yield server.url


@pytest.fixture(scope="session")
def real_data() -> Path:
    """../shared/data (or EMOTIONOPS_REAL_DATA); tests needing it skip when absent."""
    if not (REAL_DATA / "fer2013").is_dir():
        pytest.skip(f"real face data not found at {REAL_DATA} (set EMOTIONOPS_REAL_DATA)")
    return REAL_DATA.resolve()
