"""DAG tests run in the Airflow environment with a throw-away AIRFLOW_HOME.

The environment is set before Airflow is imported (Airflow reads its config at import)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DVC_POOL = "emotionops_dvc"  # dags/emotion_ingest.py DVC_POOL
_home = Path(tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_home / 'airflow.db'}",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Collection hooks see every item in the session, not just this folder's.
    if "airflow" not in Path(sys.executable).parent.parent.name:
        skip = pytest.mark.skip(reason="DAG tests run in .venv-airflow (make test does that)")
        for item in items:
            if Path(item.path).is_relative_to(Path(__file__).parent):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    # emotion_ingest's version_data runs in this pool: DVC allows one writer per project.
    subprocess.run([str(airflow), "pools", "set", DVC_POOL, "1", "DVC: one writer"],
                   check=True, capture_output=True)  # fmt: skip
    return _home


@pytest.fixture(scope="session")
def ml_venv() -> Path:
    venv = Path(os.environ.get("EMOTIONOPS_ML_VENV", REPO / ".venv"))
    if not (venv / "bin" / "emotionops").exists():
        pytest.fail(f"ML environment not found at {venv}: run `make setup`")
    return venv
