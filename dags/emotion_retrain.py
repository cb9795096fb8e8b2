"""emotion_retrain: train -> evaluate -> register -> gate/promote -> warehouse (asset emotion_model)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, task

# --- Shared wiring, the same in emotion_ingest.py and emotion_retrain.py (a DAG file must
# not import a sibling module: the DAG folder is not on every component's sys.path) ---
CLI = os.environ.get("EMOTIONOPS_CLI", "emotionops")
EMOTION_DATASET = Asset(name="emotion_dataset", uri="file:///emotionops/data/split.csv")
EMOTION_MODEL = Asset(name="emotion_model", uri="mlflow:///emotion-classifier@champion")
#: The run's date: the end of its data interval (the day a daily run collects; a cron-trigger
#: or manual run's logical date); partitions scrape/download outputs and warehouse rows.
#: Asset-triggered and manual runs may have no data interval (Airflow then leaves the name
#: undefined, and undefined names raise): their run_after stands in.
RUN_DATE = (
    "{{ (data_interval_end if data_interval_end is defined and data_interval_end"
    " else dag_run.run_after) | ds }}"
)
# Orchestration knobs (how Airflow retries its own tasks); tests shorten the delay.
RETRY_DELAY = timedelta(seconds=float(os.environ.get("EMOTIONOPS_DAG_RETRY_DELAY_S", "120")))

DEFAULT_ARGS = {
    "owner": "emotionops",
    "retries": 2,
    "retry_delay": RETRY_DELAY,
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=20),
    "execution_timeout": timedelta(minutes=30),
}


def task_env() -> dict[str, str] | None:
    """EMOTIONOPS_* variables rendered from Airflow connections (None: the worker's own)."""
    env: dict[str, str] = {}
    if conn := os.environ.get("EMOTIONOPS_WAREHOUSE_CONN_ID"):
        env["EMOTIONOPS_WAREHOUSE_URL"] = (
            "{{ macros.emotionops_warehouse.warehouse_url('" + conn + "') }}"
        )
    if conn := os.environ.get("EMOTIONOPS_MLFLOW_CONN_ID"):
        env["EMOTIONOPS_MLFLOW_TRACKING_URI"] = (
            "{{ macros.emotionops_mlflow.tracking_uri('" + conn + "') }}"
        )
    return env or None


def cli_task(task_id: str, command: str, timeout_min: int = 30, **kwargs) -> BashOperator:
    """A task that runs one `emotionops` command (templated with the run's data interval)."""
    return BashOperator(
        task_id=task_id,
        bash_command=f'"{CLI}" {command}',
        env=task_env(),
        append_env=True,  # the worker's EMOTIONOPS_* settings, plus the resolved connections
        execution_timeout=timedelta(minutes=timeout_min),
        **kwargs,
    )


# --- end of shared wiring ---


DOC = """
### emotion_retrain (on `emotion_dataset`, or weekly: whichever comes first)

1. **train**: `emotionops train --no-register --run-key emotion_retrain/<date>` on the
   current split; logs the run to MLflow (params, curves, model + TFLite) and prints its run
   id (XCom; the task's *MLflow run* link). A retry or re-run of the same data interval on the
   same dataset version reuses that run instead of training again.
2. **evaluate**: `emotionops evaluate --model runs:/<run id>` on the frozen test split.
3. **register**: `emotionops registry register --once <run id>`: a new version, alias
   `challenger` (a retry or re-run finds the version it made).
4. **promote**: `emotionops registry promote --once --version N`: the gate scores challenger
   and champion on the same test faces and moves `champion` only when every check passes
   (links: *MLflow run*, *Registered version*); a version gated before keeps its decision.
5. **load_metrics**: `emotionops warehouse load-run <run id>`: metrics, curves, per-class
   figures, confusion cells and the alias moves, into the warehouse (idempotent).
6. **champion_changed** announces the asset `emotion_model` only when the alias moved: it is
   skipped otherwise, and a skipped task emits no asset event (the edge and anything scheduled
   on `emotion_model` see only real changes).

Every task retries (2+, exponential backoff) and has a timeout. Connections:
EMOTIONOPS_WAREHOUSE_CONN_ID / EMOTIONOPS_MLFLOW_CONN_ID (Airflow connections) or the
worker's EMOTIONOPS_* environment.
"""

RUN_ID = "{{ macros.json.loads(ti.xcom_pull(task_ids='train'))['run_id'] }}"
VERSION = "{{ macros.json.loads(ti.xcom_pull(task_ids='register'))['version'] }}"


@task(outlets=[EMOTION_MODEL], execution_timeout=timedelta(minutes=2))
def champion_changed(promotion: str) -> int:
    """Succeed (emitting `emotion_model`) when `promote` moved the alias; skip otherwise."""
    from airflow.exceptions import AirflowSkipException

    result = json.loads(promotion)
    if not result.get("promoted"):
        raise AirflowSkipException(f"champion unchanged: v{result.get('version')} not promoted")
    return int(result["version"])


with DAG(
    dag_id="emotion_retrain",
    description="Train, evaluate, register, gate and promote the emotion classifier",
    doc_md=DOC,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 3 * * 0", timezone="UTC"),  # Sundays 03:00
        assets=EMOTION_DATASET,
    ),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["emotionops", "training"],
) as dag:
    train = cli_task(
        "train",
        f"train --no-register --run-date {RUN_DATE} --run-key emotion_retrain/{RUN_DATE}",
        150,
        do_xcom_push=True,
    )
    evaluate = cli_task("evaluate", f"evaluate --model runs:/{RUN_ID}", 30)
    register = cli_task("register", f"registry register --once {RUN_ID}", 15)
    promote = cli_task("promote", f"registry promote --once --version {VERSION}", 30)
    load_metrics = cli_task(
        "load_metrics", f"warehouse load-run {RUN_ID} --run-date {RUN_DATE}", 15
    )
    changed = champion_changed(promote.output)
    train >> evaluate >> register >> promote >> load_metrics >> changed
