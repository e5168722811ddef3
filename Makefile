# One toolchain: ruff (lint, format), mypy --strict, pytest.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install lint types test test-fast test-slow check bench

# pip keeps the llama-cpp-python wheel it builds in ~/.cache/pip: later installs are fast.
$(BIN)/taskloom: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[local,dev]'
	touch $@

install: $(BIN)/taskloom

lint: install
	$(BIN)/ruff check taskloom tests benchmarks examples
	$(BIN)/ruff format --check taskloom tests benchmarks examples

types: install
	$(BIN)/mypy

# Fast tests first, then the ones that load the real model or run long.
test: install
	$(BIN)/pytest -m "not model and not slow"
	$(BIN)/pytest -m "model or slow"

check: lint types test

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done
