# Developer and CI entry points. Everything runs from the repo-local virtualenv.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
BASTION_HOME ?= $(CURDIR)/.bastion
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=
DATASETS_DIR := ../shared/datasets

# Stamp files: reinstall only when the pins (or the package metadata) change.
BASE_STAMP := $(VENV)/.base-installed
TEST_STAMP := $(VENV)/.test-installed

.DEFAULT_GOAL := help
.PHONY: help venv test-deps demo test bench bench-import datasets-check clean

help:
	@echo "make venv            create .venv with the pinned runtime and bastion (editable)"
	@echo "make test-deps       venv + pinned test dependencies"
	@echo "make demo            run 'bastion demo' against BASTION_HOME=$(BASTION_HOME)"
	@echo "make test            full test suite (SQLite and PostgreSQL); PYTEST_ARGS=... to narrow"
	@echo "make reliability     tests/reliability at full size (BASTION_RELIABILITY_FULL=1)"
	@echo "make bench           write-path benchmark"
	@echo "make bench-import    scanner-import benchmark (nuclei findings/s, re-import, peak RSS)"
	@echo "make datasets-check  tests against $(DATASETS_DIR), if present"
	@echo "make clean           remove .venv and caches"

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Order-only on the interpreter: its mtime is the system python's, not the venv's.
$(BASE_STAMP): requirements/base.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/base.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

$(TEST_STAMP): requirements/test.txt $(BASE_STAMP)
	$(BIN)/python -m pip install -q -r requirements/test.txt
	@touch $@

venv: $(BASE_STAMP)

test-deps: $(TEST_STAMP)

demo: venv
	BASTION_HOME="$(BASTION_HOME)" $(BIN)/bastion demo

test: test-deps
	scripts/ensure-postgres
	scripts/ensure-chromium
	scripts/ensure-nats
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q --ignore=tests/datasets $(PYTEST_ARGS)

# The reliability suite at the full sizes of issue 11 (`make test` runs it at small sizes).
.PHONY: reliability
reliability: test-deps
	scripts/ensure-postgres
	BASTION_RELIABILITY_FULL=1 $(BIN)/python -m pytest -q tests/reliability $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/write_path.py

bench-import: venv
	$(BIN)/python bench/import_nuclei.py

datasets-check: test-deps
	@if [ -d "$(DATASETS_DIR)" ]; then \
		$(BIN)/python -m pytest -q tests/datasets $(PYTEST_ARGS); \
	else \
		echo "skipped: $(DATASETS_DIR) not present"; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
