"""The Airflow side of the warehouse connection (plugins/emotionops_warehouse.py).

Connections come from AIRFLOW_CONN_<ID> variables, as a deployment would set them. There
is no Oracle server here: the URL is asserted, and the ML environment's CLI, given that URL,
must fail fast with a clear error on a refused port.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.dags

DAGS = Path(__file__).resolve().parents[2] / "dags"
PASSWORD = "t1ger:p@ss/w0rd"  # characters that URL-escaping changes


def _oracle_conn(monkeypatch, conn_id: str = "oracle_default", **fields) -> None:
    conn = {"conn_type": "oracle", "login": "scott", "password": PASSWORD, "host": "127.0.0.1",
            "port": 1521, **fields}  # fmt: skip
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.fixture()
def macros():
    from airflow import plugins_manager
    from airflow.sdk.execution_time import macros as module

    plugins_manager.integrate_macros_plugins()
    return module


def test_the_plugin_exposes_a_macro(macros) -> None:
    assert callable(macros.emotionops_warehouse.warehouse_url)


@pytest.mark.parametrize(
    ("fields", "tail"),
    [
        ({"extra": {"service_name": "FREEPDB1"}}, "@127.0.0.1:1521?service_name=FREEPDB1"),
        ({"port": 1599, "extra": {"sid": "ORCL"}}, "@127.0.0.1:1599/ORCL"),
        ({"schema": "PDB2"}, "@127.0.0.1:1521?service_name=PDB2"),  # OracleHook's fallback
    ],
)
def test_oracle_connection_to_sqlalchemy_url(macros, monkeypatch, fields, tail) -> None:
    _oracle_conn(monkeypatch, **fields)
    url = macros.emotionops_warehouse.warehouse_url("oracle_default")
    assert url == f"oracle+oracledb://scott:t1ger%3Ap%40ss%2Fw0rd{tail}"


def test_bad_connections_are_refused_clearly(macros, monkeypatch) -> None:
    _oracle_conn(monkeypatch, extra={"sid": "A", "service_name": "B"})
    with pytest.raises(ValueError, match="either the service_name or the sid"):
        macros.emotionops_warehouse.warehouse_url("oracle_default")
    monkeypatch.setenv("AIRFLOW_CONN_HTTP_THING", json.dumps({"conn_type": "http", "host": "x"}))
    with pytest.raises(ValueError, match="of type 'http'"):
        macros.emotionops_warehouse.warehouse_url("http_thing")


def test_the_password_is_masked_in_rendered_templates(macros, monkeypatch) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    secret = "m4sk:me@now/x"  # used by no other test: the masker is process-wide
    _oracle_conn(monkeypatch, password=secret, extra={"service_name": "FREEPDB1"})
    url = macros.emotionops_warehouse.warehouse_url("oracle_default")
    assert "m4sk%3Ame%40now%2Fx" in url
    for text in (url, f"EMOTIONOPS_WAREHOUSE_URL={url}", f"password {secret}"):
        shown = str(redact(text))
        assert secret not in shown and "m4sk%3Ame%40now%2Fx" not in shown, shown


def test_the_dag_passes_the_resolved_url_to_every_cli_task(macros, monkeypatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("EMOTIONOPS_WAREHOUSE_CONN_ID", "oracle_default")
    _oracle_conn(monkeypatch, extra={"service_name": "FREEPDB1"})
    dag = DagBag(dag_folder=str(DAGS)).dags["emotion_ingest"]
    task = dag.get_task("load_urls")
    assert task.append_env is True
    rendered = task.render_template(task.env, {"macros": macros})
    assert rendered == {
        "EMOTIONOPS_WAREHOUSE_URL": "oracle+oracledb://scott:t1ger%3Ap%40ss%2Fw0rd@127.0.0.1:1521"
        "?service_name=FREEPDB1"
    }
    monkeypatch.delenv("EMOTIONOPS_WAREHOUSE_CONN_ID")
    plain = DagBag(dag_folder=str(DAGS)).dags["emotion_ingest"].get_task("load_urls")
    assert plain.env is None  # no connection id: the worker's own EMOTIONOPS_WAREHOUSE_URL


@pytest.mark.timeout(120)
def test_the_cli_fails_fast_on_the_resolved_url_when_oracle_is_down(
    macros, monkeypatch, ml_venv: Path, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    _oracle_conn(monkeypatch, port=port, extra={"service_name": "FREEPDB1"})
    url = macros.emotionops_warehouse.warehouse_url("oracle_default")
    repo = DAGS.parent
    (tmp_path / "params.yaml").write_text((repo / "params.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMOTIONOPS_", "AIRFLOW"))}
    env.update(EMOTIONOPS_PROJECT_DIR=str(tmp_path), EMOTIONOPS_WAREHOUSE_URL=url, COLUMNS="200")
    start = time.monotonic()
    proc = subprocess.run(
        [str(ml_venv / "bin" / "emotionops"), "warehouse", "init"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    message = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stderr
    assert f"cannot connect to the warehouse at oracle+oracledb://scott:***@127.0.0.1:{port}" in (
        message
    )
    assert "DPY-6005" in message and PASSWORD not in message and "Traceback" not in message
    assert time.monotonic() - start < 60  # CLI start-up included; the connect itself is ms
