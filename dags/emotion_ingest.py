"""emotion_ingest: scrape -> URLs -> download -> faces -> dataset version (asset emotion_dataset)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, task

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
### emotion_ingest (daily)

1. **canary**: `emotionops canary` checks that the configured engine still yields full-size
   URLs; an engine that yields nothing fails the run here, with the canary's one-line reason.
2. **labels** reads the label set from the project's params.yaml (at run time, no emotionops
   import); **scrape** is mapped over it: one `emotionops scrape --label L` per label, each
   into its own manifest file (parallel label runs never race on one file).
3. **validate_urls** (Great Expectations; the log and the task's *Data Docs* link name the
   page) -> **load_urls** (warehouse MERGE).
4. **download** -> **version_data** (`dvc repro` clean + split, `dvc push`; pool
   `emotionops_dvc` of one slot: DVC allows one writer) -> **validate_data** ->
   **load_images**, whose success announces the asset `emotion_dataset` (the retrain DAG's
   trigger): nothing downstream sees a split that failed its suites or was not loaded.

Every task retries (2+, exponential backoff) and has a timeout; outputs are partitioned by
the run's logical date, loads are upserts: a re-run of the same date changes nothing.
Connections: EMOTIONOPS_WAREHOUSE_CONN_ID / EMOTIONOPS_MLFLOW_CONN_ID (Airflow connections)
or the worker's EMOTIONOPS_* environment.
"""

#: DVC allows one writer per project: `version_data` holds the single slot of this pool
#: (created by `make airflow` and the tests: `airflow pools set emotionops_dvc 1 ...`).
DVC_POOL = "emotionops_dvc"


@task(execution_timeout=timedelta(minutes=2))
def labels() -> list[str]:
    """The labels of the project's params.yaml (EMOTIONOPS_PROJECT_DIR), read with PyYAML."""
    import yaml

    project = Path(os.environ.get("EMOTIONOPS_PROJECT_DIR", "."))
    path = project / os.environ.get("EMOTIONOPS_PARAMS_FILE", "params.yaml")
    found = (yaml.safe_load(path.read_text()) or {}).get("labels")
    if not found:
        raise ValueError(f"no `labels` in {path.resolve()}")
    return [str(label) for label in found]


with DAG(
    dag_id="emotion_ingest",
    description="Scrape, clean, validate, load and version the face dataset",
    doc_md=DOC,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),  # one day per run
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["emotionops", "ingest"],
) as dag:
    canary = cli_task("canary", "canary", timeout_min=10)
    label_set = labels()
    canary >> label_set
    # One task instance per label; the label reaches the command through its environment
    # (values mapped from XCom are not templated, the partial's command is).
    scrape = BashOperator.partial(
        task_id="scrape",
        bash_command=f'"{CLI}" scrape --label "$EMOTIONOPS_SCRAPE_LABEL" --run-date {RUN_DATE}',
        append_env=True,
        execution_timeout=timedelta(minutes=60),
        max_active_tis_per_dagrun=4,
        map_index_template="{{ task.env['EMOTIONOPS_SCRAPE_LABEL'] }}",
    ).expand(env=label_set.map(lambda label: {"EMOTIONOPS_SCRAPE_LABEL": label}))
    validate_urls = cli_task("validate_urls", f"validate urls --run-date {RUN_DATE}", 10)
    load_urls = cli_task("load_urls", f"warehouse load-urls --run-date {RUN_DATE}", 10)
    download = cli_task("download", f"download --run-date {RUN_DATE}", 60)
    version_data = cli_task("version_data", "version-data", 60, pool=DVC_POOL)
    validate_data = cli_task("validate_data", f"validate data --run-date {RUN_DATE}", 10)
    load_images = cli_task(
        "load_images",
        f"warehouse load-images --run-date {RUN_DATE}",
        10,
        outlets=[EMOTION_DATASET],
    )
    canary >> scrape >> validate_urls >> load_urls >> download >> version_data
    version_data >> validate_data >> load_images
