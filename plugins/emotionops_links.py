"""Airflow plugin: extra links from EmotionOps tasks to MLflow and to Great Expectations
Data Docs, and a macro that turns an Airflow connection into the MLflow tracking URI.

The tasks publish what a link needs: the `emotionops` commands print their outcome as one
JSON line last on stdout (`train`/`registry register`/`registry promote`: run id, model name,
version; `validate`: the Data Docs pages), which the BashOperator pushes as the task's XCom.
A link reads that XCom from Airflow's metadata database and builds the URL from
EMOTIONOPS_MLFLOW_UI_URL (the MLflow UI as people reach it), falling back to
EMOTIONOPS_MLFLOW_TRACKING_URI; Data Docs pages are served under EMOTIONOPS_DATA_DOCS_URL
when set (a web server over data/gx/uncommitted/data_docs/local_site), else as file:// URLs.
No network call at link time. A task without such an XCom (another task, a failed run) gets
no link ("").
"""

from __future__ import annotations

import json
import os
from pathlib import PurePosixPath
from typing import ClassVar
from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import BaseOperatorLink

#: Task ids whose XCom carries an MLflow run / a registered version / Data Docs pages.
RUN_TASKS = frozenset({"train", "promote", "register"})
VERSION_TASKS = frozenset({"register", "promote"})
VALIDATION_TASKS = frozenset({"validate_urls", "validate_data"})
DATA_DOCS_SITE = "local_site"


def mlflow_ui_base() -> str:
    base = os.environ.get("EMOTIONOPS_MLFLOW_UI_URL") or os.environ.get(
        "EMOTIONOPS_MLFLOW_TRACKING_URI", ""
    )
    return base.rstrip("/") if base.startswith(("http://", "https://")) else ""


def run_url(result: dict) -> str:
    base = mlflow_ui_base()
    return f"{base}/#/runs/{quote(result['run_id'])}" if base and result.get("run_id") else ""


def version_url(result: dict) -> str:
    base = mlflow_ui_base()
    if not (base and result.get("model_name") and result.get("version")):
        return ""
    return f"{base}/#/models/{quote(result['model_name'])}/versions/{int(result['version'])}"


def data_docs_url(result: dict) -> str:
    pages = result.get("pages") or []
    page = next((p for p in pages if p), None) or result.get("data_docs") or ""
    if not page:
        return ""
    base = os.environ.get("EMOTIONOPS_DATA_DOCS_URL", "").rstrip("/")
    parts = PurePosixPath(page).parts
    if base and DATA_DOCS_SITE in parts:  # the page's path inside the served site
        inside = parts[parts.index(DATA_DOCS_SITE) + 1 :]
        return f"{base}/" + "/".join(quote(p) for p in inside)
    return PurePosixPath(page).as_uri() if page.startswith("/") else ""


def task_result(ti_key) -> dict:
    """The task's JSON outcome line (its return_value XCom), {} when there is none."""
    value = _xcom_value(ti_key)
    if isinstance(value, dict):
        return value
    if not isinstance(value, str) or not value.strip().startswith("{"):
        return {}
    try:
        result = json.loads(value)
    except ValueError:
        return {}
    return result if isinstance(result, dict) else {}


def _xcom_value(ti_key):
    """The return_value XCom of `ti_key`, read from the metadata database (API server)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(
                run_id=ti_key.run_id,
                key="return_value",
                task_ids=ti_key.task_id,
                dag_ids=ti_key.dag_id,
                map_indexes=ti_key.map_index,
            ).with_only_columns(XComModel.value)
        ).first()
    return None if row is None else XComModel.deserialize_value(_Row(row))


class _Row:
    """deserialize_value takes an object with a `value` attribute."""

    def __init__(self, value) -> None:
        self.value = value


class _EmotionOpsLink(BaseOperatorLink):
    operators: ClassVar[list] = [BashOperator]
    tasks: ClassVar[frozenset[str]] = frozenset()

    def url(self, result: dict) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_link(self, operator, *, ti_key) -> str:
        if operator.task_id not in self.tasks:
            return ""
        return self.url(task_result(ti_key))


class MlflowRunLink(_EmotionOpsLink):
    name = "MLflow run"
    tasks = RUN_TASKS

    def url(self, result: dict) -> str:
        return run_url(result)


class RegisteredVersionLink(_EmotionOpsLink):
    name = "Registered version"
    tasks = VERSION_TASKS

    def url(self, result: dict) -> str:
        return version_url(result)


class DataDocsLink(_EmotionOpsLink):
    name = "Data Docs"
    tasks = VALIDATION_TASKS

    def url(self, result: dict) -> str:
        return data_docs_url(result)


def tracking_uri(conn_id: str) -> str:
    """The MLflow tracking URI of an Airflow connection (http/https: host, port, schema as
    the path); credentials stay in the worker's MLFLOW_TRACKING_USERNAME/PASSWORD."""
    from airflow.sdk import Connection

    conn = Connection.get(conn_id)
    if not conn.host:
        raise ValueError(f"connection {conn_id} has no host")
    host = conn.host if "://" in conn.host else f"{conn.conn_type or 'http'}://{conn.host}"
    if host.split("://")[0] not in ("http", "https"):
        host = "http://" + host.split("://", 1)[1]
    port = f":{conn.port}" if conn.port else ""
    path = f"/{conn.schema.strip('/')}" if conn.schema else ""
    return f"{host.rstrip('/')}{port}{path}"


class EmotionOpsLinksPlugin(AirflowPlugin):
    name = "emotionops_mlflow"
    operator_extra_links: ClassVar[list] = [
        MlflowRunLink(),
        RegisteredVersionLink(),
        DataDocsLink(),
    ]
    macros: ClassVar[list] = [tracking_uri]
