"""Shared fixtures: real servers started per session, on free ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# As the CLI does (cli.main): no MLflow telemetry, whose offline thread races on os.environ.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REAL_DATA = Path(
    os.environ.get("EMOTIONOPS_REAL_DATA", Path(__file__).parents[1] / "../shared/data")
)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server (SQLite + local artifacts); yields its URL."""
    from emotionops.tracking import LocalMlflowServer

    store = tmp_path_factory.mktemp("mlflow")
    with LocalMlflowServer(store) as server:
        yield server.url


@pytest.fixture(scope="session")
def real_data() -> Path:
    """../shared/data (or EMOTIONOPS_REAL_DATA); tests needing it skip when absent."""
    if not (REAL_DATA / "fer2013").is_dir():
        pytest.skip(f"real face data not found at {REAL_DATA} (set EMOTIONOPS_REAL_DATA)")
    return REAL_DATA.resolve()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """A real PostgreSQL server (Debian's package) on a free port; a `_postgres.LocalPostgres`.

    Skips only when the binaries are absent (`make setup` installs them)."""
    from _postgres import LocalPostgres, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries not found in /usr/lib/postgresql (run `make setup`)")
    with LocalPostgres(bin_dir) as server:
        yield server
