# Clearing-house trade pipeline. `make help` lists the targets.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
ORDERS ?= 100000
RATE ?= 0

.DEFAULT_GOAL := help
.PHONY: help install demo test test-unit lint bench validate checkov build up down status clean

help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

install: ## install the package with everything the local runtime and the tests need
	$(PIP) install --quiet --disable-pip-version-check -e '.[local,dev]'

demo: install ## the main job: start the local stack, publish $(ORDERS) orders, verify, report
	clearing demo --orders $(ORDERS) --rate $(RATE) --report reports/demo.html

test: install ## every test (unit, integration, e2e, template checks), as CI runs them
	$(PYTHON) -m pytest -q -p no:cacheprovider

test-unit: install ## fast unit tests only
	$(PYTHON) -m pytest -q tests/unit

lint: ## ruff
	ruff check layers functions tests

bench: install ## matching-engine and handler benchmarks (figures in README)
	clearing bench match --generate 1000000 --out .clearing/workload.jsonl
	clearing bench match --workload .clearing/workload.jsonl
	clearing bench handlers

validate: ## sam validate --lint and cfn-lint on template.yaml
	sam validate --lint --region us-east-1
	cfn-lint template.yaml

checkov: ## security scan of template.yaml (checkov in its own venv: its pins clash with ours)
	test -x .venv-checkov/bin/checkov || ($(PYTHON) -m venv .venv-checkov && .venv-checkov/bin/pip install --quiet checkov)
	.venv-checkov/bin/checkov --config-file .checkov.yaml -f template.yaml --skip-download

build: ## sam build (layer + functions)
	sam build

up: install ## start the local stack in the background (broker, moto_server, mappings)
	clearing up

down: ## stop what `make up` started
	clearing down

status: ## components, addresses and consumer lag per function
	clearing status

clean: ## remove local state and build output
	rm -rf .clearing .aws-sam reports
