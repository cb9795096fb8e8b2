#!/usr/bin/env bash
# A local Airflow (standalone: API server, scheduler, DAG processor, triggerer) running the
# project's DAGs, for `make airflow` / `make airflow-stop`.
#   scripts/airflow-local.sh start   start in the background on a free port, wait until
#                                    healthy, print the URL and where the admin password is
#   scripts/airflow-local.sh stop    stop it and every child (SIGTERM to its process group,
#                                    SIGKILL after 30 s if anything lingers)
# AIRFLOW_HOME (default ./airflow-home) holds its database, logs, pid and URL files.
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=$PWD
export AIRFLOW_HOME=${AIRFLOW_HOME:-$PROJECT/airflow-home}
AF_BIN=$PROJECT/.venv-airflow/bin
PID_FILE=$AIRFLOW_HOME/standalone.pid
URL_FILE=$AIRFLOW_HOME/standalone.url
LOG_FILE=$AIRFLOW_HOME/standalone.log

running() { [[ -f $PID_FILE ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

start() {
  [[ -x $AF_BIN/airflow ]] || { echo "no Airflow environment at .venv-airflow: run make setup" >&2; exit 2; }
  if running; then echo "Airflow is already running at $(cat "$URL_FILE") (make airflow-stop)"; return 0; fi
  mkdir -p "$AIRFLOW_HOME"
  local port=${AIRFLOW_PORT:-$("$AF_BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  local url=http://127.0.0.1:$port
  # Sized for 2 cores: a few task slots, one DAG run at a time; the project's DAGs only.
  export AIRFLOW__CORE__DAGS_FOLDER=$PROJECT/dags AIRFLOW__CORE__PLUGINS_FOLDER=$PROJECT/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__PARALLELISM=${AIRFLOW__CORE__PARALLELISM:-4} \
    AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=2 AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG=1 \
    AIRFLOW__API__PORT=$port AIRFLOW__API__BASE_URL=$url \
    EMOTIONOPS_CLI=${EMOTIONOPS_CLI:-$PROJECT/.venv/bin/emotionops} \
    EMOTIONOPS_PROJECT_DIR=${EMOTIONOPS_PROJECT_DIR:-$PROJECT}
  PATH=$AF_BIN:$PATH setsid "$AF_BIN/airflow" standalone >"$LOG_FILE" 2>&1 < /dev/null &
  echo $! >"$PID_FILE"
  echo "$url" >"$URL_FILE"
  echo "starting Airflow on $url (log: $LOG_FILE) ..."
  local deadline=$((SECONDS + ${AIRFLOW_START_TIMEOUT:-180}))
  until "$AF_BIN/python" - "$url" <<'PY' 2>/dev/null
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/api/v2/monitor/health", timeout=2) as r:
    health = json.load(r)
sys.exit(0 if health.get("scheduler", {}).get("status") == "healthy" else 1)
PY
  do
    if ! running; then echo "Airflow exited while starting; see $LOG_FILE" >&2; tail -20 "$LOG_FILE" >&2; exit 2; fi
    if ((SECONDS > deadline)); then echo "Airflow not healthy after ${AIRFLOW_START_TIMEOUT:-180} s; see $LOG_FILE" >&2; stop; exit 2; fi
    sleep 1  # polling a server that has no readiness signal
  done
  # emotion_ingest's version_data runs in this pool of one slot: DVC allows one writer.
  "$AF_BIN/airflow" pools set emotionops_dvc 1 "DVC: one writer per project" >/dev/null
  echo "Airflow is up: $url"
  echo "  user admin, password in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
  echo "  stop it with: make airflow-stop"
}

stop() {
  if ! running; then echo "Airflow is not running"; rm -f "$PID_FILE" "$URL_FILE"; return 0; fi
  local pid; pid=$(cat "$PID_FILE")
  # SIGTERM to the whole process group: every component (scheduler, API server, DAG
  # processor, triggerer and their workers) shuts down itself. SIGTERM to standalone alone
  # leaves its children running, and SIGINT is ignored by a background job of a script.
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 30); do pgrep -g "$pid" >/dev/null || break; sleep 1; done
  if pgrep -g "$pid" >/dev/null; then
    kill -KILL -- "-$pid" 2>/dev/null || true
    # SIGKILL is delivered asynchronously: wait until the group is really gone.
    for _ in $(seq 20); do pgrep -g "$pid" >/dev/null || break; sleep 0.5; done
  fi
  rm -f "$PID_FILE" "$URL_FILE"
  echo "Airflow stopped"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
