"""EmotionOps pipeline: scrape -> URLs -> download -> versioned dataset -> warehouse -> train -> edge.

Great Expectations gates sit before each warehouse load (validate_urls, validate_data).

Wiring only. Every task runs the ML environment's `emotionops` CLI (path from the
EMOTIONOPS_CLI environment variable), exactly as a production image with a pre-built task
virtualenv would; all logic lives in the `emotionops` library. Endpoints reach the CLI
through the EMOTIONOPS_* environment of the worker.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Asset

CLI = os.environ.get("EMOTIONOPS_CLI", "emotionops")
# An Airflow connection id for the warehouse (e.g. oracle_default): the plugin
# emotionops_warehouse turns it into the task's EMOTIONOPS_WAREHOUSE_URL at run time (masked).
WAREHOUSE_CONN_ID = os.environ.get("EMOTIONOPS_WAREHOUSE_CONN_ID")
WAREHOUSE_ENV = (
    {
        "EMOTIONOPS_WAREHOUSE_URL": "{{ macros.emotionops_warehouse.warehouse_url('"
        + WAREHOUSE_CONN_ID
        + "') }}"
    }
    if WAREHOUSE_CONN_ID
    else None
)
EMOTION_DATASET = Asset(name="emotion_dataset", uri="file:///emotionops/data/split.csv")

default_args = {
    "owner": "emotionops",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(minutes=30),
}


def cli_task(task_id: str, command: str, timeout_min: int = 30, **kwargs) -> BashOperator:
    """A task that runs one `emotionops` command for the run's logical date."""
    return BashOperator(
        task_id=task_id,
        bash_command=f'"{CLI}" {command}',
        env=WAREHOUSE_ENV,
        append_env=True,  # the worker's EMOTIONOPS_* settings, plus the resolved URL
        execution_timeout=timedelta(minutes=timeout_min),
        **kwargs,
    )


with DAG(
    dag_id="emotionops_pipeline",
    description="Scrape, clean, version, load, train, promote and run the edge loop",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # DVC allows one writer at a time
    default_args=default_args,
    tags=["emotionops"],
) as dag:
    scrape = cli_task("scrape", "scrape --run-date {{ ds }}", timeout_min=60)
    # Great Expectations gates: a failed suite fails the task (exit 1) and the run stops before
    # the load. The load commands validate again (same suites) so a manual load is guarded too.
    # One retry only: a data failure is deterministic, a retry only covers a crashed worker.
    validate_urls = cli_task(
        "validate_urls", "validate urls --run-date {{ ds }}", timeout_min=10, retries=1
    )
    load_urls = cli_task("load_urls", "warehouse load-urls --run-date {{ ds }}", timeout_min=10)
    download = cli_task("download", "download --run-date {{ ds }}", timeout_min=60)
    version_data = cli_task("version_data", "version-data", timeout_min=60)
    # The dataset asset is announced only once it passed its suites: a DAG scheduled on it
    # never trains on a split that failed validation.
    validate_data = cli_task(
        "validate_data",
        "validate data --run-date {{ ds }}",
        timeout_min=10,
        retries=1,
        outlets=[EMOTION_DATASET],
    )
    load_images = cli_task(
        "load_images", "warehouse load-images --run-date {{ ds }}", timeout_min=10
    )
    train = cli_task("train", "train --run-date {{ ds }}", timeout_min=120)
    edge = cli_task("edge_smoke", "edge run --max-frames 300 --health-port 0", timeout_min=15)

    scrape >> validate_urls >> load_urls >> download >> version_data >> validate_data
    validate_data >> load_images >> train >> edge
