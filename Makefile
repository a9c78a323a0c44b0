# Two entry points: `make run` (the main job on the embedded defaults) and `make test`.
# Both first make a project virtual environment in .venv with the Python given as PY (any Python
# 3.10+, the stock Debian/Ubuntu one included: PEP 668 forbids installing into it, so nothing is
# installed there), then install into .venv: a current pip first, torch (pinned, so pip takes the CPU
# wheel), then ftlab (and, for `make test`, its test tools). The pip upgrade is not cosmetic: Debian 12's venv has pip
# 23.0.1, which builds the sdist-only seqeval with setuptools' legacy setup_requires and fails on a
# machine with no pip cache (setuptools_scm 10 fetched as an egg without its dependency vcs_versioning). Every target runs with .venv/bin first on PATH, so the `ftlab`, `dvc`
# and `prefect` that the pipeline and the tests start are the venv's.
PY ?= python3
VENV ?= .venv
# the index torch comes from; empty: pip's default. GitHub's CPU runners set PyTorch's CPU index
# (https://download.pytorch.org/whl/cpu): on Linux, PyPI's torch is the CUDA build, several GB of
# nvidia-* wheels that a CPU runner never uses. GPU runners leave it empty and get the CUDA build.
TORCH_INDEX ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.ftlab-installed
TEST_STAMP := $(VENV)/.ftlab-test-installed
WITH_VENV := PATH="$(abspath $(BIN)):$$PATH" VIRTUAL_ENV="$(abspath $(VENV))"

.PHONY: install install-test run test lint server worker

# Prefect's server and a process worker for the deployments in prefect.yaml (README: Prefect).
# PREFECT_SERVER_ANALYTICS_ENABLED=false: the server's telemetry heartbeat otherwise printed
# "sqlite3.OperationalError: database is locked" tracebacks into its log. PREFECT: Prefect's own CLI,
# started with Python's Ctrl-C handling restored: a shell that runs a command in the background
# (`make worker &` in a script, nohup) starts it with SIGINT ignored, and then `prefect worker start`
# swallowed the first SIGINT and SIGTERM (its handler re-sends the signal to the ignored disposition)
# and only the second stopped it, with SIGKILL. Restored, one SIGINT or SIGTERM stops it in about a second.
PREFECT_HOST ?= 127.0.0.1
PREFECT_PORT ?= 4200
PREFECT_POOL ?= ftlab
PREFECT_API_URL ?= http://127.0.0.1:$(PREFECT_PORT)/api
PREFECT := PREFECT_SERVER_ANALYTICS_ENABLED=false python -c 'import signal, sys; \
	signal.signal(signal.SIGINT, signal.default_int_handler); sys.argv[0] = "prefect"; \
	from prefect.cli import app; sys.exit(app())'

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade "pip>=25.1,<27"
	$(BIN)/python -m pip install torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -e .
	touch $(STAMP)

# the test tools (pytest, hypothesis, ruff, mypy, act, shellcheck, mkdocs, ...) on top: only
# `make test` and `make lint` need them, so `make run` does not install them
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -e ".[test]"
	touch $(TEST_STAMP)

install: $(STAMP)

install-test: $(TEST_STAMP)

run: install
	$(WITH_VENV) dvc repro

# one pytest-xdist worker per core, each test module on one worker (its module fixtures, such as a
# DVC repo after `dvc repro`, are built once); `pytest -n 0` runs serially
test: install-test
	$(WITH_VENV) python -m pytest -q -n auto --dist loadfile --durations=15

lint: install-test
	$(WITH_VENV) ruff check .
	$(WITH_VENV) mypy src/

# a Prefect server on $(PREFECT_HOST):$(PREFECT_PORT) (PREFECT_HOST=0.0.0.0 for cluster workers); Ctrl-C stops it
server: install
	$(WITH_VENV) $(PREFECT) server start --host $(PREFECT_HOST) --port $(PREFECT_PORT)

# a process worker of the pool $(PREFECT_POOL) against $(PREFECT_API_URL), with the venv's Python: it runs the
# deployed flows in this directory; Ctrl-C (or SIGTERM) stops it
worker: install
	$(WITH_VENV) PREFECT_API_URL=$(PREFECT_API_URL) $(PREFECT) worker start --pool $(PREFECT_POOL)
