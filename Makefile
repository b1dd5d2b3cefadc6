# One Makefile for people and CI. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## make .venv and install cxstream with its dev extras
	@echo "installed into $(VENV)"

demo: $(STAMP) ## the main job on the embedded default: broker, Redis, worker, demo replay, live triggers
	$(BIN)/cxstream dev

test: $(STAMP) ## the whole test suite (starts and stops its own broker and Redis)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP) ## ruff lint + format check, mypy --strict
	$(BIN)/ruff check streams rules tests
	$(BIN)/ruff format --check streams rules tests
	$(BIN)/mypy

format: $(STAMP) ## format and auto-fix
	$(BIN)/ruff format streams rules tests
	$(BIN)/ruff check --fix streams rules tests

clean: ## remove the venv, caches and local state
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .cxstream

.PHONY: help install demo test lint format clean
