# PageGrid: `make run` serves the gateway, `make test` runs the test suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app app

.PHONY: run test test-fast lint bench clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "PageGrid needs $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(FLASK) init-db
	$(FLASK) ensure-admin
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# The suite runs on SQLite, then on PostgreSQL (PAGEGRID_TEST_POSTGRES_URL, default
# postgresql://postgres@127.0.0.1:5432/postgres; each run creates and drops its own database).
# Files that never reach the database dialect (pages in Chromium, layout, docs snippets, deploy
# files, pure translation and fuzzing) run once, on SQLite.
SQLITE_ONLY := tests/test_browser.py tests/test_layout.py tests/test_docs.py tests/test_deploy.py \
	tests/test_translate_chat.py tests/test_translate_responses.py tests/test_fuzz.py

test: lint
	$(BIN)/pytest
	$(BIN)/pytest --db=postgresql $(addprefix --ignore=,$(SQLITE_ONLY))

# The quick loop while editing: SQLite only, no browser, no live gunicorn.
test-fast: lint
	$(BIN)/pytest -m "not live" --ignore=tests/test_browser.py --ignore=tests/test_layout.py

bench: $(VENV)/.dev
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

# End to end with the real clients (Claude Code, Codex CLI, OpenClaw, the Anthropic/OpenAI SDKs)
# against a fake provider; see e2e/run.py. Installs the pinned clients into .e2e/ from npm and,
# like `make test`, needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379.
.PHONY: e2e e2e-latest
e2e: $(VENV)/.dev
	bash e2e/install.sh
	$(BIN)/python -m e2e.run

# The same scenarios with the newest published clients and SDKs (not part of CI): installs them into
# .e2e-latest/ (Python SDKs in .e2e-latest/venv) and prints scenario × client version × pass/fail.
e2e-latest: $(VENV)/.dev
	bash e2e/install.sh --latest
	PAGEGRID_E2E_DIR=.e2e-latest $(BIN)/python -m e2e.run
