"""A DVC remote on S3 (dvc-s3) against a real S3 API server: moto_server on a free local
port (in memory). Settings name the bucket and endpoint; credentials come from the standard
AWS variables, never from files in git."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from _project import moto_s3

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    moto = BIN / "moto_server"
    if not moto.is_file():
        pytest.skip("moto_server is not installed (requirements/ml.in: moto[server])")
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    with moto_s3(moto) as url:
        yield url


def test_dataset_pushed_to_and_pulled_from_s3(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from emotionops.dataset import dvc
    from emotionops.settings import Settings

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="emotion-data")
    monkeypatch.setenv("EMOTIONOPS_DVC_REMOTE_URL", "s3://emotion-data/dvcstore")
    monkeypatch.setenv("EMOTIONOPS_DVC_REMOTE_ENDPOINT_URL", s3_endpoint)
    settings = Settings()

    project = tmp_path / "project"
    faces = project / "data" / "faces" / "happy"
    faces.mkdir(parents=True)
    for i in range(3):
        (faces / f"{i}.png").write_bytes(bytes([i]) * (100 + i))
    remote = dvc.ensure_dvc_project(
        project,
        settings.dvc_remote_url,
        project / "dvc-remote",
        endpoint_url=settings.dvc_remote_endpoint_url,
    )
    assert remote == "s3://emotion-data/dvcstore"
    config = (project / ".dvc" / "config.local").read_text()
    assert "s3://emotion-data/dvcstore" in config and s3_endpoint in config
    assert "testing" not in config  # credentials stay in the environment

    dvc.run_dvc(project, "add", "data/faces")
    dvc.push(project)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="emotion-data")["Contents"]]
    assert len(keys) >= 4 and all(k.startswith("dvcstore/") for k in keys)  # 3 files + .dir

    # A fresh checkout elsewhere: no cache, no data, then `dvc pull` from S3.
    import shutil

    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(project / "data" / "faces")
    dvc.run_dvc(project, "pull")
    assert sorted(p.name for p in faces.iterdir()) == ["0.png", "1.png", "2.png"]
    assert (faces / "2.png").read_bytes() == bytes([2]) * 102
