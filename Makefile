# Two entry points: `make run` (the main job on the embedded defaults) and `make test`.
# Both install what they need first; torch is pinned so pip takes the local CPU wheel.
PY ?= python3
STAMP := build/.installed

.PHONY: install run test

$(STAMP): pyproject.toml
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[test]"
	mkdir -p build && touch $(STAMP)

install: $(STAMP)

run: install
	dvc repro

test: install
	$(PY) -m pytest -q
