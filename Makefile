# One toolchain: ruff (lint, format), mypy --strict, pytest.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install lock newest lint types test test-fast test-slow check bench

# The dev and CI environment is requirements-dev.lock, exactly: pip installs the pinned
# versions, then taskloom itself without resolving anything again. pyproject keeps the
# ranges users get. pip keeps the llama-cpp-python wheel it builds in ~/.cache/pip, so
# later installs are fast. requirements-learn.lock pins the `learn` extra (adapter training).
$(BIN)/taskloom: pyproject.toml requirements-dev.lock requirements-learn.lock
	rm -rf $(VENV)
	python3 -m venv $(VENV)
	$(BIN)/pip install -q "$$(grep '^pip==' requirements-dev.lock)"
	$(BIN)/pip install -q -r requirements-dev.lock
	$(BIN)/pip install -q -r requirements-learn.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

install: $(BIN)/taskloom

# Take upgrades on purpose: the newest versions inside pyproject's ranges, resolved by uv
# against the configured index (UV_INDEX_URL and friends, as pip's are for pip), written
# to requirements-dev.lock; `git diff requirements-dev.lock` shows what moved.
# `make lock UPGRADE="--upgrade-package redis"` moves one package only.
UPGRADE ?= --upgrade
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra local --extra dev --python-version 3.11 \
		--quiet $(UPGRADE) -o requirements-dev.lock
	$(MAKE) install

# The ranges kept honest: the newest versions pyproject allows, in a throwaway venv, run
# through mypy and the fast tests. It reports; CI does not fail on it (docs/development.md).
NEWEST ?= .venv-newest
newest: install
	rm -rf $(NEWEST)
	python3 -m venv $(NEWEST)
	$(NEWEST)/bin/pip install -q --upgrade pip
	$(NEWEST)/bin/pip install -q -e '.[local,dev]'
	$(BIN)/python .ci/newest.py $(NEWEST)/bin/python

lint: install
	$(BIN)/ruff check taskloom tests benchmarks examples .ci
	$(BIN)/ruff format --check taskloom tests benchmarks examples .ci

types: install
	$(BIN)/mypy

# Fast tests first, then the ones that load the real model or run long.
test: install
	$(BIN)/pytest -m "not model and not slow"
	$(BIN)/pytest -m "model or slow"

check: lint types test

# Every benchmark in one go, then docs/benchmarks.md's table from benchmarks/results.json. A
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
