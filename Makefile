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

# Every benchmark in one go, then the README's table from benchmarks/results.json. A
# benchmark that fails is named at the end (exit 1); the others still run. BENCH_QUICK
# run with --quick; BENCH_SKIP not at all (bench_llama_server first builds llama.cpp's
# server from source, ~10 minutes on 2 cores: run it by hand).
BENCH_QUICK ?= bench_dispatch
BENCH_SKIP ?= bench_llama_server
bench: install
	@start=$$(date +%s); failed=; \
	for b in benchmarks/bench_*.py; do \
		name=$$(basename $$b .py); flags=; \
		case " $(BENCH_SKIP) " in *" $$name "*) echo "== $$b skipped (BENCH_SKIP)"; continue;; esac; \
		case " $(BENCH_QUICK) " in *" $$name "*) flags=--quick;; esac; \
		echo "== $$b $$flags"; t=$$(date +%s); \
		$(BIN)/python $$b $$flags || failed="$$failed $$name"; \
		echo "== $$name: $$(( $$(date +%s) - t )) s"; \
	done; \
	$(BIN)/python benchmarks/table.py; \
	echo "make bench: $$(( $$(date +%s) - start )) s in all"; \
	if [ -n "$$failed" ]; then echo "make bench: failed:$$failed"; exit 1; fi
