"""EmotionOps scraper canary: every day, check that the configured image-search engine still
yields full-size image URLs, so a markup change is caught before the next scrape runs.

Wiring only: the task runs the ML environment's `emotionops canary` (path from the
EMOTIONOPS_CLI environment variable). It fails with the canary's one-line reason (service
down, a named selector that no longer matches, too few results).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

CLI = os.environ.get("EMOTIONOPS_CLI", "emotionops")

with DAG(
    dag_id="emotionops_scrape_canary",
    description="Daily check that the image-search engine still yields full-size URLs",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "emotionops",
        # One retry absorbs a transient network blip; a real breakage fails within minutes.
        "retries": 1,
        "retry_delay": timedelta(minutes=5),
    },
    tags=["emotionops", "canary"],
) as dag:
    BashOperator(
        task_id="canary",
        bash_command=f'"{CLI}" canary',
        execution_timeout=timedelta(minutes=10),
    )
