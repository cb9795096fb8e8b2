#!/usr/bin/env bash
# The production MLflow tracking server, with authentication (MLflow's basic-auth app).
#
# Everything comes from the environment, under MLflow's own variable names (the `mlflow`
# CLI and its auth app read the same ones), so one name means one thing in this script,
# docker-compose.yml and the README:
#
#   required  MLFLOW_AUTH_ADMIN_PASSWORD      admin password (>= 12 characters, not MLflow's
#                                             old shipped default); creates the admin user on
#                                             first start, ignored once it exists
#             MLFLOW_FLASK_SERVER_SECRET_KEY  Flask secret (CSRF of the sign-up form); the same
#                                             on every replica
#             MLFLOW_BACKEND_STORE_URI        e.g. postgresql+psycopg://mlflow:PW@postgres/mlflow
#             MLFLOW_ARTIFACTS_DESTINATION    e.g. s3://bucket/mlflow (AWS_* credentials,
#                                             MLFLOW_S3_ENDPOINT_URL) or a local folder
#   optional  MLFLOW_AUTH_ADMIN_USERNAME      default admin
#             MLFLOW_AUTH_DATABASE_URI        users and permissions; default: basic_auth.db
#                                             beside a SQLite store, else the backend database
#                                             (MLflow's auth tables have their own migrations)
#             MLFLOW_AUTH_DEFAULT_PERMISSION  what a user may do without a grant; default READ
#             MLFLOW_AUTH_CACHE_TTL_SECONDS   remember a checked password this long; default 60
#                                             (0: MLflow's default, a PBKDF2 check per request)
#             MLFLOW_SERVER_ALLOWED_HOSTS     Host headers served (--allowed-hosts); default
#                                             MLflow's: localhost and private IPs
#             MLFLOW_HOST, MLFLOW_PORT        default 0.0.0.0, 5000
#             MLFLOW_WORKERS                  default 1 (lean: ~500 MB, see PLATFORM-NOTES)
#             MLFLOW_SERVER_ENABLE_JOB_EXECUTION  default false (no job runner processes)
# Extra arguments are passed on to `mlflow server` (e.g. --cors-allowed-origins ...).
set -euo pipefail

# MLflow refuses this password itself since GHSA-gq3w-7jj3-x7gr (the value older releases
# shipped in basic_auth.ini), but only after ~10 s of imports and only on first start.
readonly LEGACY_DEFAULT_PASSWORD="password1234"

refuse() {
    echo "start-server.sh: $*" >&2
    exit 2
}

require() {
    [[ -n "${!1:-}" ]] || refuse "$1 is not set: $2"
}

require MLFLOW_AUTH_ADMIN_PASSWORD "set the admin password (at least 12 characters)"
[[ "$MLFLOW_AUTH_ADMIN_PASSWORD" != "$LEGACY_DEFAULT_PASSWORD" ]] ||
    refuse "MLFLOW_AUTH_ADMIN_PASSWORD is MLflow's publicly known default password: choose another"
((${#MLFLOW_AUTH_ADMIN_PASSWORD} >= 12)) ||
    refuse "MLFLOW_AUTH_ADMIN_PASSWORD is shorter than 12 characters (MLflow's minimum)"
require MLFLOW_FLASK_SERVER_SECRET_KEY "set a random secret, e.g. \$(openssl rand -hex 32)"
require MLFLOW_BACKEND_STORE_URI "set the backend store, e.g. postgresql+psycopg://user:pw@host/db"
require MLFLOW_ARTIFACTS_DESTINATION "set the artifact store, e.g. s3://bucket/mlflow"

# Users live beside a SQLite store (sqlite:///dir/mlflow.db -> sqlite:///dir/basic_auth.db),
# and in the same database otherwise.
if [[ "$MLFLOW_BACKEND_STORE_URI" == sqlite:///* ]]; then
    default_auth_db="${MLFLOW_BACKEND_STORE_URI%/*}/basic_auth.db"
else
    default_auth_db="$MLFLOW_BACKEND_STORE_URI"
fi
auth_db="${MLFLOW_AUTH_DATABASE_URI:-$default_auth_db}"

# The auth app reads its settings from an ini file, written fresh at every start into a
# private (0700) temporary folder. The admin password stays in the environment (MLflow reads
# MLFLOW_AUTH_ADMIN_PASSWORD before the file): the file holds a secret only when the database
# URI carries one. configparser treats % as interpolation: URL-encoded passwords need %%.
#
# The credential cache: without it every request pays a PBKDF2 check (~0.3 s measured on two
# busy cores, so a training run's hundreds of calls add minutes). It lives in each worker, and
# a password change or user deletion through the API clears it there at once: with the default
# single worker nothing goes stale; with more, another worker may accept an old password for
# up to the TTL.
config_dir="$(mktemp -d)"
export MLFLOW_AUTH_CONFIG_PATH="$config_dir/basic_auth.ini"
cat >"$MLFLOW_AUTH_CONFIG_PATH" <<EOF
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = ${auth_db//%/%%}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL_SECONDS:-60}
EOF

export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}"

args=(
    --app-name basic-auth
    --backend-store-uri "$MLFLOW_BACKEND_STORE_URI"
    --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION"
    --host "${MLFLOW_HOST:-0.0.0.0}"
    --port "${MLFLOW_PORT:-5000}"
    --workers "${MLFLOW_WORKERS:-1}"
)
if [[ -n "${MLFLOW_SERVER_ALLOWED_HOSTS:-}" ]]; then
    args+=(--allowed-hosts "$MLFLOW_SERVER_ALLOWED_HOSTS")
fi

exec mlflow server "${args[@]}" "$@"
