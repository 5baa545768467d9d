# Thin wrappers: every target sets up what it needs on a fresh machine first.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(wildcard protos/videogen/v1/*.proto)
# The hashed locks that installs read (pip install --require-hashes), renewed by `make lock` from
# requirements*.txt: dev (what .venv gets), runtime (the image) and protogen (the image's build).
LOCKS := requirements-dev.lock requirements.lock requirements-protogen.lock
PIP_TOOLS := pip==26.3 pip-tools==7.6.2

.PHONY: help venv lock proto k8s-rules k8s-envoy run test chaos chaos-all bench lint fmt clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.lock
	@scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	@touch $@

venv: $(STAMP) ## create .venv and install the dependencies (from requirements-dev.lock, hashes checked)

# pip-tools in a throwaway venv. The dev lock is compiled first; the other two are held to its pins,
# so every lock names the same version of a package. Existing pins stay unless LOCK_ARGS=--upgrade.
lock: ## renew the hashed requirements*.lock from requirements*.txt (LOCK_ARGS=--upgrade for newer transitive pins)
	@tools=$$(mktemp -d); trap 'rm -rf "$$tools"' EXIT; \
	"$(PYTHON)" -m venv "$$tools"; \
	"$$tools/bin/python" -m pip install --quiet $(PIP_TOOLS); \
	compile() { CUSTOM_COMPILE_COMMAND="make lock" "$$tools/bin/pip-compile" --quiet --generate-hashes \
	  --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS) "$$@"; }; \
	compile -o requirements-dev.lock requirements-dev.txt; \
	compile -c requirements-dev.lock -o requirements.lock requirements.txt; \
	compile -c requirements-dev.lock -o requirements-protogen.lock requirements-protogen.txt

proto: $(STAMP) ## generate the Python code of protos/ into gen/
	@$(PY) scripts/protogen.py gen

k8s-rules: $(STAMP) ## copy deploy/prometheus's alert rules into k8s/ as a PrometheusRule
	@$(PY) scripts/render_prometheus_rule.py

k8s-envoy: $(STAMP) ## copy deploy/envoy/envoy.yaml into k8s/ (and its TLS variant for components/edge-tls)
	@$(PY) scripts/render_k8s_envoy.py

run: $(STAMP) ## start the whole system in the foreground (Ctrl-C stops it)
	@$(PY) -m services.run

test: $(STAMP) ## run every test
	@scripts/ensure-tools.sh
	@$(PY) -m pytest $(PYTEST_ARGS)

chaos: $(STAMP) ## faults under load on make run's processes (CHAOS_ARGS="-s worker-kill --jobs 100")
	@$(PY) -m tests.chaos $(CHAOS_ARGS)

chaos-all: $(STAMP) ## every chaos scenario and the 20-minute soak (not in CI; CHAOS_ARGS="--soak-minutes 5")
	@$(PY) -m tests.chaos --all $(CHAOS_ARGS)

bench: $(STAMP) ## throughput, CPU and memory beside baselines; targets, JSON, chart (BENCH_ARGS="--seconds 5")
	@$(PY) -m bench $(BENCH_ARGS)

lint: $(STAMP) ## ruff and mypy --strict
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy

fmt: $(STAMP) ## format and autofix
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

clean: ## remove the virtual environment and caches (keeps .data/)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
