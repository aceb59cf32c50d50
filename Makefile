# The two commands of the README: `make demo` and `make test`. Both create and update .venv
# themselves; a stamp file keeps a second run quick when pyproject.toml has not changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-core
STAMP_ALL := $(VENV)/.installed-all
# torch first and pinned: an unpinned torch pulls several GB of CUDA packages.
TORCH := torch==2.13.0

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev,data]"
	touch $@

$(STAMP_ALL): pyproject.toml $(STAMP)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev,data,rl]"
	touch $@

AGENTS := chiron,static,llumnix,queue-threshold,kv-target,ray-serve,dynamo-load,random

demo: $(STAMP_ALL)
	$(BIN)/chiron evaluate --agents $(AGENTS) --scenarios default --seeds 0 --out runs/demo

test: $(STAMP_ALL)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy chiron_gym agents

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
