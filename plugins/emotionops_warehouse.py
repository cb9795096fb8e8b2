"""Airflow plugin: turn an Airflow connection id into the warehouse's SQLAlchemy URL.

DAG tasks run the ML environment's `emotionops` CLI, which has no Airflow to read
connections from. The DAG renders `{{ macros.emotionops_warehouse.warehouse_url('<id>') }}`
into the task's EMOTIONOPS_WAREHOUSE_URL, so the secret stays in Airflow's connection store
(metastore, env var AIRFLOW_CONN_<ID>, or a secrets backend) and reaches the task only in
its environment. The password, in the forms it appears in (raw and URL-escaped), and the
whole URL are registered with Airflow's secrets masker, so rendered templates and logs show
*** instead.

Oracle connections are read through the Oracle provider's OracleHook with its rules: extra
`service_name` or `sid` (not both), the Schema field taken as the service name when neither
is set, port 1521 by default; the URL uses python-oracledb's thin mode
(`oracle+oracledb://user:pw@host:port/?service_name=...` or `.../<sid>`). Postgres
connections map to `postgresql+psycopg://`.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote, quote_plus

from airflow.plugins_manager import AirflowPlugin

ORACLE_DEFAULT_PORT = 1521


class WarehouseConnectionError(ValueError):
    """The Airflow connection cannot be turned into a warehouse URL."""


def _oracle_url(conn_id: str):
    from airflow.providers.oracle.hooks.oracle import OracleHook
    from sqlalchemy.engine import URL

    hook = OracleHook(oracle_conn_id=conn_id)
    conn = hook.get_connection(hook.get_conn_id())
    extra = conn.extra_dejson
    if extra.get("dsn") and not conn.host:
        raise WarehouseConnectionError(
            f"connection {conn_id}: a full `dsn` extra is not supported for the warehouse; "
            "set Host, Port and a service_name (or sid) extra"
        )
    if not conn.host:
        raise WarehouseConnectionError(f"connection {conn_id} has no host")
    service_name, sid = hook.service_name, hook.sid
    if service_name and sid:
        raise WarehouseConnectionError(
            f"connection {conn_id}: set either the service_name or the sid extra, not both"
        )
    if not service_name and not sid:
        service_name = conn.schema or None  # OracleHook.get_conn's own fallback
    return URL.create(
        "oracle+oracledb",
        username=conn.login,
        password=conn.password,
        host=conn.host,
        port=conn.port or ORACLE_DEFAULT_PORT,
        database=sid or None,
        query={"service_name": service_name} if service_name else {},
    ), conn.password


def _postgres_url(conn_id: str):
    from airflow.sdk import Connection
    from sqlalchemy.engine import URL

    conn = Connection.get(conn_id)
    return URL.create(
        "postgresql+psycopg",
        username=conn.login,
        password=conn.password,
        host=conn.host,
        port=conn.port,
        database=conn.schema or None,
    ), conn.password


def warehouse_url(conn_id: str) -> str:
    """The SQLAlchemy URL for Airflow connection `conn_id` (oracle or postgres)."""
    from airflow.sdk import Connection
    from airflow.sdk.log import mask_secret

    conn_type = (Connection.get(conn_id).conn_type or "").lower()
    if conn_type == "oracle":
        url, password = _oracle_url(conn_id)
    elif conn_type in ("postgres", "postgresql"):
        url, password = _postgres_url(conn_id)
    else:
        raise WarehouseConnectionError(
            f"connection {conn_id} is of type {conn_type!r}: the warehouse takes an oracle or "
            "postgres connection"
        )
    text = url.render_as_string(hide_password=False)
    if password:
        for form in {password, quote(password, safe=""), quote_plus(password)}:
            mask_secret(form)
        mask_secret(text)
    return text


class EmotionOpsWarehousePlugin(AirflowPlugin):
    name = "emotionops_warehouse"
    macros: ClassVar[list] = [warehouse_url]
