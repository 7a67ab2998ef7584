# The four commands of the README. Everything installs into .venv from PyPI.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/data/.dagster
export CLV_DATA_DIR ?= $(CURDIR)/data

.PHONY: install demo test ui clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; run: make PYTHON=python3 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/clv-platform demo

test: install
	$(BIN)/python -m pytest

ui: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

clean:
	rm -rf $(VENV) data/.dagster data/*.duckdb data/*.duckdb.wal
