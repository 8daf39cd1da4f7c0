# The two commands a user needs: `make run` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint bench bench-full clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/dropscore --settings settings.toml serve

# The suite runs on every core (at most 4 workers): most of its time is spent waiting for the
# servers, trainers and clusters it starts, so two workers on two cores finish far sooner than
# one. A test file stays on one worker (its module fixtures are made once); the workers share
# one PostgreSQL, moto_server and Dask cluster (scoring/testing/shared.py). `make test
# PYTEST_WORKERS=0` runs it in one process.
PYTEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadfile

# The suite without the end-to-end tests that start real processes (marked `slow`).
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# `make bench`: every bench at a small size (minutes); `make bench FULL=1` or `make bench-full`:
# the sizes the goals are stated at (5M rows, ~1 GB CSV; 15 s load runs). Each bench prints the
# machine's load first and alternates project and baseline, reporting median pair ratios.
ifdef FULL
BENCH_SCORE := --rows 5000000 --upload-rows 1000000
BENCH_PREDICT :=
BENCH_PROTOCOLS :=
BENCH_MODELS := --pairs 5 --seconds 5
else
BENCH_SCORE := --rows 200000 --upload-rows 100000
BENCH_PREDICT := --seconds 3 --warmup 1
BENCH_PROTOCOLS := --quick
BENCH_MODELS := --seconds 2
endif

bench: $(STAMP)
	$(BIN)/python -m bench.score --pairs 3 $(BENCH_SCORE)
	$(BIN)/python -m bench.predict $(BENCH_PREDICT)
	$(BIN)/python -m bench.protocols $(BENCH_PROTOCOLS)
	$(BIN)/python -m bench.models $(BENCH_MODELS)
	$(BIN)/python -m bench.startup --runs 3

bench-full:
	$(MAKE) bench FULL=1

clean:
	rm -rf $(VENV) build *.egg-info
