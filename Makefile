# Two commands for a new user: `make up` and `make test`. Everything else is
# what they are made of. All Python runs in .venv, built from pinned files.
SHELL := /bin/bash
PYTHON_BASE ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?= auto
export PYTHONPATH := $(CURDIR)

.PHONY: help install install-up system-deps test-system-deps model up test test-unit mutation lint format clean bench bench-triton images kube-dev

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# `make up` installs only what running the service needs; `make test` adds the rest.
# uv installs (devstack/install.py: pip's configuration, uv's speed; pip if uv is
# missing), without byte-compiling; compileall then byte-compiles on every core
# (faster than pip's one-core compiling; first-run timings: README.md). Like pip,
# compileall ignores files that do not compile (torch ships one for Python 3.12).
INSTALL := $(PY) -m devstack.install
BYTE_COMPILE := $(PY) -m compileall -qq -j 0 $(VENV)/lib || true

$(VENV)/.bootstrapped: requirements/bootstrap.txt
	@test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/bootstrap.txt \
		|| echo "uv could not be installed: pip will install the packages (slower)"
	@touch $@

$(VENV)/.up-installed: requirements/up.txt requirements/model.txt requirements/proxy.txt requirements/constraints.txt $(VENV)/.bootstrapped
	@echo "installing the service's Python packages into $(VENV) (under a minute the first time)"
	$(INSTALL) -r requirements/up.txt -c requirements/constraints.txt
	@echo "byte-compiling them on every core (about half a minute on 2 cores)"
	@$(BYTE_COMPILE)
	@touch $@

$(VENV)/.installed: requirements/*.txt $(VENV)/.up-installed
	$(INSTALL) --quiet -r requirements/dev.txt -c requirements/constraints.txt
	@$(BYTE_COMPILE)
	@touch $@

# command:package pairs from Debian, apt-installed when the command is missing
MONITORING ?=
TRACING ?=
RUNTIME_TOOLS := redis-server:redis-server $(if $(filter-out 0,$(MONITORING)),prometheus:prometheus)
TEST_TOOLS := chromium:chromium prometheus:prometheus podman:podman runc:runc \
	mmdebstrap:mmdebstrap haproxy:haproxy
define apt_missing
	@missing=$$(for pair in $(1); do command -v $${pair%%:*} >/dev/null || echo $${pair#*:}; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing; \
		else echo "missing: sudo apt-get install $$missing" >&2; exit 1; fi; fi
endef

system-deps:  ## redis-server (MONITORING=1: and prometheus) from Debian when absent (needs root)
	$(call apt_missing,$(RUNTIME_TOOLS))

test-system-deps:  ## chromium, prometheus, podman + runc + mmdebstrap (images), haproxy (rollout) when absent
	$(call apt_missing,$(TEST_TOOLS))

install-up: $(VENV)/.up-installed system-deps  ## what `make up` needs: runtime packages + redis-server

install: $(VENV)/.installed system-deps  ## everything: + test, lint and load-test tools

model: install-up  ## get MODEL (auto|hub|trained-offline|standin-base|standin-tiny|PATH) into model_repository/
	$(PY) -m modelctl get $(MODEL)

up: install-up  ## run redis + tritonserver + proxy on 127.0.0.1 (proxy :8080); MONITORING=1: + Prometheus; TRACING=1: + traces; Ctrl-C stops
	MODEL=$(MODEL) MONITORING=$(MONITORING) TRACING=$(TRACING) $(PY) -m devstack.up

test: install test-system-deps  ## the whole test suite against real servers
	$(PY) -m pytest

test-unit: install  ## only the tests that need no server
	$(PY) -m pytest -m "not integration"

images: install test-system-deps  ## build both images with podman (MODEL: hub needs the hub; default standin-tiny)
	$(PY) -m devstack.containers build --model $(if $(filter auto,$(MODEL)),standin-tiny,$(MODEL))

kube-dev: images  ## run k8s/overlays/dev in podman (one pod, manifests as written); Ctrl-C stops
	$(PY) -m devstack.kubeplay k8s/overlays/dev

$(VENV)/.perf-installed: requirements/perf.txt $(VENV)/.installed
	$(INSTALL) --quiet -r requirements/perf.txt -c requirements/constraints.txt
	@$(BYTE_COMPILE)
	@touch $@

bench: install $(VENV)/.perf-installed  ## this stack vs the original design and MLServer, k6 profiles + plots (SHORT=1: ~20 min; ENGINE=name pins ours' engine)
	$(PY) -m perf.compare $(if $(SHORT),--short,) $(if $(ENGINE),--engine $(ENGINE),)

bench-triton: install $(VENV)/.perf-installed  ## every engine on this CPU (speed, accuracy, batch drift), then Triton end to end (SHORT=1: shorter)
	$(PY) -m perf.triton.bench $(if $(SHORT),--short,)

# mutmut runs the tests from a copy in mutants/, one directory deeper: the data's path is absolute.
SST2_TRAIN_TSV ?= $(abspath $(CURDIR)/../shared/data/sst2/train.tsv)
mutation: install  ## mutation testing of admission, predictor and engine selection against their tests (not in make test; ~25 min)
	$(INSTALL) --quiet -r requirements/mutation.txt -c requirements/constraints.txt
	@mkdir -p .artifacts
	ln -sfn model_repository/distilbert_sst2/1/selection.py selection.py  # see pyproject's [tool.mutmut]
	SST2_TRAIN_TSV=$(SST2_TRAIN_TSV) $(VENV)/bin/mutmut run --max-children 2 > .artifacts/mutmut-run.log 2>&1 \
		&& $(VENV)/bin/mutmut export-cicd-stats && $(PY) -m tests.mutation \
		|| { status=$$?; rm -f selection.py; tail -c 3000 .artifacts/mutmut-run.log; exit $$status; }
	rm -f selection.py

lint: install $(VENV)/.perf-installed  ## ruff (lint + format check) and mypy (perf deps: mypy reads perf/)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:  ## remove caches and run state (keeps .venv and downloaded models)
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache mutants
