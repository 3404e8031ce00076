# Every target installs what it needs first: on a fresh clone `make run` and `make test` are all
# it takes. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# uv installs .venv from uv.lock, exactly. It lives in a venv of its own, .uv/, installed from
# PyPI with pip at the version and hashes in requirements-uv.txt: `uv sync` removes from .venv
# whatever uv.lock does not list, and uv is not in it.
UV_HOME := .uv
UV := $(UV_HOME)/bin/uv
# Named after the pyproject.toml and uv.lock it was installed from: a change to either re-installs.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml uv.lock | sha1sum | cut -c1-12)
# The venv gets this machine's Python: uv never downloads an interpreter. Bytecode is compiled
# at install, as pip does: with PYTHONDONTWRITEBYTECODE set, every process would compile every
# module it imports anew (slow starts of the test servers).
export UV_PYTHON ?= $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_COMPILE_BYTECODE := 1
HOST ?= 127.0.0.1
PORT ?= 8000
DEV_TOKEN_FILE := var/dev-admin-token
# The local PostgreSQL server the tests create their throwaway databases on.
export APP_TEST_DATABASE_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
# The Redis the shared rate-limit store is tested on (keys under a name of each test's own).
export APP_TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(UV): requirements-uv.txt
	@echo "==> installing uv (requirements-uv.txt) into $(UV_HOME)"
	@test -x $(UV_HOME)/bin/python || $(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install --quiet --require-hashes --no-deps -r requirements-uv.txt
	@touch $@

# --locked: uv.lock must agree with pyproject.toml (else `make lock` first); every group.
$(STAMP): pyproject.toml uv.lock $(UV)
	@echo "==> installing the project and its tools from uv.lock into $(VENV)"
	@$(UV) sync --locked --all-extras || { echo "==> make lock updates uv.lock" >&2; exit 1; }
	@rm -f $(VENV)/.installed-* && touch $@

.PHONY: install
install: $(STAMP) ## Create the venv and install the project with its dev tools, from uv.lock

.PHONY: lock
lock: $(UV) ## Update uv.lock after editing pyproject.toml (LOCK_ARGS=--upgrade: newest allowed)
	$(UV) lock $(LOCK_ARGS)

.PHONY: lock-check
lock-check: $(UV) ## Fail if uv.lock does not agree with pyproject.toml (CI runs it)
	@$(UV) lock --check || { echo "==> uv.lock is stale: run make lock, commit uv.lock" >&2; exit 1; }

.PHONY: outdated
outdated: install ## List the locked packages that have newer releases
	$(UV) pip list --outdated --python $(VENV)

$(DEV_TOKEN_FILE):
	@mkdir -p var && umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(24))" > $@

.PHONY: migrate
migrate: install ## Apply the database migrations (APP_DATABASE_URL, default: SQLite in var/)
	@mkdir -p var
	$(BIN)/alembic upgrade head

.PHONY: run
run: install migrate $(DEV_TOKEN_FILE) ## Serve on http://127.0.0.1:8000 (SQLite unless APP_DATABASE_URL says otherwise)
	@token=$${APP_ADMIN_TOKEN:-$$(cat $(DEV_TOKEN_FILE))}; \
	echo ""; \
	echo "  Purchase page:  http://$(HOST):$(PORT)/"; \
	echo "  API docs:       http://$(HOST):$(PORT)/docs"; \
	echo "  Read endpoints need the dev admin token (kept in $(DEV_TOKEN_FILE)):"; \
	echo "    curl -H 'Authorization: Bearer $$token' http://$(HOST):$(PORT)/api/v1/customers"; \
	echo ""; \
	APP_ADMIN_TOKEN=$$token exec $(BIN)/python -m app --host $(HOST) --port $(PORT)

.PHONY: test
test: install ## Run every test, on SQLite and on PostgreSQL, browser tests included
	@mkdir -p var
	$(BIN)/pytest --junitxml=var/junit.xml $(PYTEST_ARGS)

.PHONY: lint
lint: install lint-container ## ruff, ruff format --check, mypy --strict, hadolint, compose schema
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict app tests bench

.PHONY: fmt
fmt: install ## Format and auto-fix the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: check
check: ## What CI runs, exactly: .ci/run (lock, lint, every test counted by group, containers)
	bash .ci/run

.PHONY: clean
clean: ## Remove the venvs (project and uv), caches and local databases
	rm -rf $(VENV) $(UV_HOME) var .pytest_cache .mypy_cache .ruff_cache

-include mk/*.mk
