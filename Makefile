# The four commands of the README. Everything installs into .venv from PyPI.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/data/.dagster
export CLV_DATA_DIR ?= $(CURDIR)/data
# only `make ui` passes these on (tests point the data folder elsewhere and must not inherit them)
CLV_REPORTS_DIR ?= $(CLV_DATA_DIR)/reports
REPORTS_PORT ?= 3001
UI_PORT ?= 3000
CLV_REPORTS_URL ?= http://127.0.0.1:$(REPORTS_PORT)

.PHONY: install demo test lint ui bench clean

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

# On every core (pytest-xdist), one test file per worker: a file's module fixtures (a materialized
# store, a trained model) are built once. Files are handed out in collection order, where
# clv_platform_tests/conftest.py puts the slowest first (xdist's default reorders them by test
# count, which started the few-test, minutes-long files last). `PYTEST_ARGS="-n 0"` runs it in one process.
PYTEST_ARGS ?= -n auto --dist loadfile --no-loadscope-reorder
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Layers import downward only (the order is declared in tools/check_imports.py).
lint: install
	$(BIN)/python tools/check_imports.py

# The scale benchmark (benchmarks/, not part of the installed package), e.g.
#   make bench ARGS="--customers 100000 --mode nightly"
bench: install
	$(BIN)/python -m benchmarks.bench $(ARGS)

# The UI, plus data/reports served read-only (GET/HEAD only) on 127.0.0.1:$(REPORTS_PORT): browsers
# refuse file:// links from the UI, so the assets link to http://127.0.0.1:$(REPORTS_PORT)/<report>.
# The report server stops with the UI. `dagster dev` is still the command of dagster 1.13 (its
# successor `dg dev` needs another package), so its supersession notice is filtered.
ui: install $(DAGSTER_HOME)/dagster.yaml
	@mkdir -p $(CLV_REPORTS_DIR)
	@$(BIN)/python -m http.server --bind 127.0.0.1 --directory $(CLV_REPORTS_DIR) $(REPORTS_PORT) >/dev/null 2>&1 & \
	server=$$!; trap 'kill $$server 2>/dev/null' EXIT INT TERM; \
	echo "reports: http://127.0.0.1:$(REPORTS_PORT)/ (serving $(CLV_REPORTS_DIR))"; \
	cd $(DAGSTER_HOME) && CLV_REPORTS_DIR=$(CLV_REPORTS_DIR) CLV_REPORTS_URL=$(CLV_REPORTS_URL) \
		PYTHONWARNINGS='ignore:Function `dev_command` is superseded' \
		$(CURDIR)/$(BIN)/dagster dev -h 127.0.0.1 -p $(UI_PORT) -w $(CURDIR)/workspace.yaml

clean:
	rm -rf $(VENV) data/.dagster data/*.duckdb data/*.duckdb.wal
