# Two commands for users: `make run` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; \
	done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck unit integration install clean bench bench-unreads bench-history bench-web screenshots

install: $(STAMP)

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "echonats needs Python >= 3.11 on PATH (python3.11, python3.12, ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "==> [1/2] upgrading pip in .venv"
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "==> [2/2] installing echonats and its dependencies into .venv (first run or after a pyproject.toml change; about 30 s)"
	set -o pipefail; $(BIN)/python -m pip install --progress-bar off -e '.[dev]' \
		| { grep -v '^Requirement already satisfied' || true; }
	@echo "==> installed"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/echonats run

test: lint typecheck unit integration

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

# The browser tests' npm packages (playwright-core, keycloak-js, @stomp/stompjs), pinned by the lock file.
BROWSER_STAMP := tests/browser/node_modules/.installed-stamp

$(BROWSER_STAMP): tests/browser/package.json tests/browser/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error && touch $(BROWSER_STAMP); \
	else echo "npm not found: the browser tests will be skipped"; fi

integration: $(STAMP) $(BROWSER_STAMP)
	$(BIN)/python -m pytest tests/integration -q

BENCH_STAMP := $(VENV)/.bench-stamp
PRESET ?= quick

$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

# Latency/throughput against the seed targets and nats-server's own WebSocket listener (bench/README.md).
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench --preset $(PRESET)

bench-unreads: $(BENCH_STAMP)
	$(BIN)/python -m bench.unreads

bench-history: $(BENCH_STAMP)
	$(BIN)/python -m bench.history

# The web client's rendering in headless Chromium (page load -> first message, frame times over 10,000).
bench-web: $(BENCH_STAMP) $(BROWSER_STAMP)
	$(BIN)/python -m bench.webclient

# Re-takes the README's screenshots of the web client (docs/screenshots) with the browser test.
screenshots: $(STAMP) $(BROWSER_STAMP)
	WEB_CLIENT_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest tests/integration/test_web_client_browser.py -q

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
