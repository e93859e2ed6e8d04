# Clearing-house trade pipeline. `make help` lists the targets.
#
# Installs come from uv.lock only (hashes, one resolution for every install path) into a project
# venv, $(VENV) (default .venv): nothing is installed into the system Python, no activation needed.
# uv itself is bootstrapped, pinned by hash (requirements/uv.txt), into $(UV_HOME).
PYTHON ?= python3
VENV ?= .venv
UV_HOME ?= .venv-uv
CHECKOV_VENV ?= .venv-checkov
ORDERS ?= 100000
RATE ?= 0

UV := $(UV_HOME)/bin/uv
BIN := $(VENV)/bin
# uv syncs into $(VENV) and never downloads an interpreter: it uses $(PYTHON) (3.11)
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON_DOWNLOADS := never
# the venv's tools (clearing, sam, cfn-lint) first on PATH for the recipes and what they start
export PATH := $(abspath $(BIN)):$(PATH)
export CHECKOV_VENV := $(abspath $(CHECKOV_VENV))

.DEFAULT_GOAL := help
.PHONY: help install install-dev demo test test-unit lint format bench validate checkov build up down status schemas \
        lock upgrade clean openapi

help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(UV): requirements/uv.txt
	@# a venv for uv alone; where `python3 -m venv` is missing (Debian without python3-venv), pip --target
	@( $(PYTHON) -m venv $(UV_HOME) >/dev/null 2>&1 \
	   && $(UV_HOME)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements/uv.txt ) \
	|| ( rm -rf $(UV_HOME) && $(PYTHON) -m pip install --quiet --disable-pip-version-check --require-hashes \
	       --target $(UV_HOME)/lib -r requirements/uv.txt && mkdir -p $(UV_HOME)/bin && ln -sf ../lib/bin/uv $(UV) )
	@touch $(UV)

install: $(UV) ## runtime + local stack from uv.lock into $(VENV) (what `make demo` needs; no test tools)
	$(UV) sync --frozen --inexact --quiet --python $(PYTHON) --extra local

install-dev: $(UV) ## install + test, lint and type-check tools (exactly the lock's local+dev set) + checkov venv
	$(UV) sync --frozen --quiet --python $(PYTHON) --extra local --extra dev
	@test -x $(CHECKOV_VENV)/bin/checkov || ( $(UV) venv --quiet --python $(PYTHON) $(CHECKOV_VENV) \
	  && $(UV) pip install --quiet --python $(CHECKOV_VENV)/bin/python --require-hashes -r requirements/checkov.txt )

demo: install ## the main job: start the local stack, publish $(ORDERS) orders, verify, report
	$(BIN)/clearing demo --orders $(ORDERS) --rate $(RATE) --report reports/demo.html

test: install-dev ## every test (unit, integration, e2e, template checks), as CI runs them
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-unit: install-dev ## fast unit tests only
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

lint: install-dev ## ruff check + ruff format --check + mypy (strict on domain, repositories and services; config in pyproject)
	$(BIN)/ruff check layers proxy tools functions tests
	$(BIN)/ruff format --check layers proxy tools functions tests
	$(BIN)/mypy

format: install-dev ## ruff format + safe fixes
	$(BIN)/ruff format layers proxy tools functions tests
	$(BIN)/ruff check --fix layers proxy tools functions tests

bench: install ## matching-engine and handler benchmarks (figures in README)
	$(BIN)/clearing bench match --generate 1000000 --out .clearing/workload.jsonl
	$(BIN)/clearing bench match --workload .clearing/workload.jsonl
	$(BIN)/clearing bench handlers

validate: install-dev ## sam validate --lint and cfn-lint on template.yaml
	$(BIN)/sam validate --lint --region us-east-1
	$(BIN)/cfn-lint template.yaml

checkov: install-dev ## security scan of template.yaml (checkov in its own locked venv: its pins clash with ours)
	$(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml -f template.yaml --skip-download

build: install ## sam build (layer + functions)
	$(BIN)/sam build

up: install ## start the local stack in the background (broker, moto_server, mappings)
	$(BIN)/clearing up

down: ## stop what `make up` started
	$(BIN)/clearing down

status: ## components, addresses and consumer lag per function
	$(BIN)/clearing status

schemas: install ## regenerate schemas/*.schema.json and docs/wire-format.md from clearing/messages.py (a test checks them)
	$(BIN)/clearing schemas

openapi: install ## regenerate docs/api/openapi.json from the member API's routes (a test checks it)
	$(BIN)/python -c "from clearing.api.routes import openapi_json; print(openapi_json())" > docs/api/openapi.json

lock: $(UV) ## re-resolve uv.lock within pyproject's ranges (keeps current pins where possible) + derived files
	$(UV) lock --python $(PYTHON)
	$(MAKE) --no-print-directory lock-files

upgrade: $(UV) ## re-resolve to the newest releases, then run every test: upgrades are deliberate and tested
	$(UV) lock --upgrade --python $(PYTHON)
	echo "checkov" | $(UV) pip compile - --upgrade --generate-hashes --universal --python-version 3.11 --no-header --quiet -o requirements/checkov.txt
	$(MAKE) --no-print-directory lock-files
	rm -rf $(CHECKOV_VENV)
	$(MAKE) --no-print-directory test
	@echo "upgrade tested: review 'git diff uv.lock', then commit uv.lock and requirements/"

.PHONY: lock-files
lock-files:
	@# the Lambda layer's requirements: the lock's runtime set (no extras), same versions and hashes
	$(UV) export --frozen --quiet --no-emit-project --no-dev --format requirements-txt \
	  --output-file layers/clearing_core/requirements.txt
	@sed -i '1,2c # Generated from uv.lock by `make lock` (uv export, runtime set): do not edit by hand.\n# sam build installs these into the ClearingCoreLayer (arm64 wheels are in the hashes).' \
	  layers/clearing_core/requirements.txt
	@# the FIX proxy image: the runtime set plus the proxy extra
	$(UV) export --frozen --quiet --no-emit-project --no-dev --extra proxy --format requirements-txt \
	  --output-file requirements/proxy.txt
	@sed -i '1,2c # Generated from uv.lock by `make lock` (uv export, runtime set + proxy extra): do not edit by hand.\n# proxy/Dockerfile installs these with --require-hashes.' requirements/proxy.txt

clean: ## remove local state, build output and the venvs
	rm -rf .clearing .aws-sam reports $(VENV) $(UV_HOME) $(CHECKOV_VENV)
