#!/usr/bin/env bash
# Runs once, on the first start of the postgres service (an empty data volume): one server,
# two databases, each owned by its own user: Airflow's metadata and MLflow's backend store
# (runs, registry, users). The passwords come from the environment (docker-compose.yml).
set -euo pipefail
: "${AIRFLOW_DB_PASSWORD:?set AIRFLOW_DB_PASSWORD}" "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD}"
for pair in "airflow:$AIRFLOW_DB_PASSWORD" "mlflow:$MLFLOW_DB_PASSWORD"; do
    name=${pair%%:*} password=${pair#*:}
    # psql variables (:'pw') quote the password as a literal: no SQL injection through it.
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -v name="$name" -v pw="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'pw';
CREATE DATABASE :"name" OWNER :"name";
SQL
done
