# One toolchain: ruff (lint, format), mypy --strict, pytest.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install lint types test test-fast test-slow check bench

# pip keeps the llama-cpp-python wheel it builds in ~/.cache/pip: later installs are fast.
$(BIN)/taskloom: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
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

# Every benchmark in one go, then the README's table from benchmarks/results.json.
BENCH_QUICK := bench_dispatch
bench: install
	@start=$$(date +%s); \
	for b in benchmarks/bench_*.py; do \
		flags=; case " $(BENCH_QUICK) " in *" $$(basename $$b .py) "*) flags=--quick;; esac; \
		echo "== $$b $$flags"; $(BIN)/python $$b $$flags || exit 1; \
	done; \
	$(BIN)/python benchmarks/table.py; \
	echo "make bench: every benchmark in $$(( $$(date +%s) - start )) s"
