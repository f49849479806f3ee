# stadtlink — two commands do everything:
#   make demo   the whole city on one machine (local broker, simulated devices, twin view)
#   make test   installs what the tests need, starts Mosquitto and Redis if needed, runs every test
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_ARGS ?=

.PHONY: demo test venv install install-test services clean chart-schema contexts

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

venv: $(BIN)/python

install: venv
	$(BIN)/python -m pip install --quiet -e '.[demo]'

install-test: venv
	$(BIN)/python -m pip install --quiet -e '.[test,demo]'

demo: install
	$(BIN)/stadtlink demo $(DEMO_ARGS)

services:
	bash scripts/ensure-services.sh

test: install-test services
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# Regenerate helm/stadtlink/values.schema.json (and the chart README's values table) after a change
# to a config or settings model; tests/helm fails while it is stale.
chart-schema: install contexts
	$(BIN)/python scripts/gen_values_schema.py

# Regenerate every copy of the @context files from schemas/ (the compound context's derived order
# and the chart's copy); tests/schemas/test_schemas_context_copies.py fails while one is stale.
contexts: install
	$(BIN)/python scripts/gen_contexts.py

clean:
	rm -rf build dist *.egg-info .pytest_cache
