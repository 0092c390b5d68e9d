# Vigil — the single entry point. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := $(shell grep -v '^\#' debian-packages.txt)

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

system-deps: ## install the Debian packages the stack needs (skipped when all present)
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(STAMP): requirements.txt requirements-dev.txt requirements-no-deps.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, from the CPU wheel on disk: any other version pulls a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -r requirements-no-deps.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: system-deps $(STAMP) ## create .venv with the pinned dependencies

# `make demo DATASET=smd` runs the demo on a published dataset instead of the simulated fleet:
# every entity in DATASET_PATH, or the comma-separated ENTITIES.
DATASET ?=
DATASET_PATH ?= ../shared/data/$(DATASET)
ENTITIES ?=

demo: setup ## set everything up and run the demo (DATASET=smd [DATASET_PATH=…] [ENTITIES=a,b])
	$(VENV)/bin/vigil demo $(if $(DATASET),--dataset $(DATASET) --path $(DATASET_PATH)) \
		$(if $(ENTITIES),--entities $(ENTITIES))

test: setup checkov-venv ## run the whole test suite
	$(VENV)/bin/pytest -n 2 --dist loadgroup

lint: setup ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy bench  # the benchmarks, a package outside the installed ones, checked all the same

format: setup ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup ## run the benchmarks (they print ratios against a baseline)
	$(PY) -m bench.features
	$(PY) -m bench.export
	$(PY) -m bench.training
	$(PY) -m bench.window_read
	$(PY) -m bench.serving
	$(PY) -m bench.loadtest
	$(PY) -m bench.rag

helm-sync: setup ## copy monitoring rules, dashboards and the A/B routes into the Helm chart (tests fail on drift)
	$(PY) helm/sync_monitoring.py
	$(VENV)/bin/vigil serving router --write-chart-routes

# checkov pins an old boto3, so it gets a venv of its own.
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/bin/checkov:
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q checkov==3.3.30

checkov-venv: $(CHECKOV_VENV)/bin/checkov ## checkov in its own venv (its pins clash with .venv's)

dashboards: setup ## regenerate the Grafana dashboards JSON from monitoring/grafana/generate_dashboards.py
	$(PY) monitoring/grafana/generate_dashboards.py

clean: ## remove the virtual environments and local data
	rm -rf $(VENV) $(CHECKOV_VENV) data reports .vigil

.PHONY: help system-deps setup demo test lint format bench dashboards helm-sync checkov-venv clean
