# Two entry points: `make run` (the main job on the embedded defaults) and `make test`.
# Both first make a project virtual environment in .venv with the Python given as PY (any Python
# 3.10+, the stock Debian/Ubuntu one included: PEP 668 forbids installing into it, so nothing is
# installed there), then install into .venv: a current pip first, torch (pinned, so pip takes the CPU
# wheel), then ftlab with its test tools. The pip upgrade is not cosmetic: Debian 12's venv has pip
# 23.0.1, which builds the sdist-only seqeval with setuptools' legacy setup_requires and fails on a
# machine with no pip cache (setuptools_scm 10 fetched as an egg without its dependency vcs_versioning). Every target runs with .venv/bin first on PATH, so the `ftlab`, `dvc`
# and `prefect` that the pipeline and the tests start are the venv's.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ftlab-installed
WITH_VENV := PATH="$(abspath $(BIN)):$$PATH" VIRTUAL_ENV="$(abspath $(VENV))"

.PHONY: install run test lint

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade "pip>=25.1,<27"
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(WITH_VENV) dvc repro

# one pytest-xdist worker per core, each test module on one worker (its module fixtures, such as a
# DVC repo after `dvc repro`, are built once); `pytest -n 0` runs serially
test: install
	$(WITH_VENV) python -m pytest -q -n auto --dist loadfile --durations=15

lint: install
	$(WITH_VENV) ruff check .
	$(WITH_VENV) mypy src/
