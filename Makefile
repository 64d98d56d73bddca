# Tallystick — the two commands of the quickstart are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser postgres demo test lint typecheck unit bench clean

install: $(STAMP)

$(STAMP): pyproject.toml tests/experiments/requirements-reference.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Tallystick needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps -r tests/experiments/requirements-reference.txt
	@touch $(STAMP)

# Debian's chromium, for the dashboard's browser tests (Playwright never downloads its own).
browser:
	@command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium) \
		|| (echo "error: the browser tests need Debian's chromium; install it as root: apt-get install chromium" >&2; exit 1)

# PostgreSQL's server binaries, for the control plane's Postgres tests (a throwaway cluster per
# run; the tests are skipped when the binaries cannot be installed).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql) \
		|| echo "note: PostgreSQL could not be installed (apt-get install postgresql, as root); its tests will be skipped" >&2

demo: install
	$(BIN)/tally demo

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

# Two pytest-xdist workers: CI's machine and the developers' have two cores, and much of the
# suite waits on servers and subprocesses; tests/conftest.py says which tests share a worker.
# `make unit TEST_WORKERS=0` runs everything in one process.
TEST_WORKERS ?= 2

unit: install browser postgres
	$(BIN)/pytest -n $(TEST_WORKERS)

test: lint typecheck unit

bench: install
	@command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/metrics.py
	$(BIN)/python bench/stats.py
	$(BIN)/python bench/experiments.py
	$(BIN)/python bench/flags.py
	$(BIN)/python bench/privacy.py
	@command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium)
	$(BIN)/python bench/dashboard.py

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache .hypothesis
