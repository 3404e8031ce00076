# Every target installs what it needs first: on a fresh clone `make run` and `make test` are all
# it takes. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
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

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> installing the project and its tools into $(VENV)"
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar on -e '.[dev,e2e,ops]'
	@rm -f $(VENV)/.installed-* && touch $@

.PHONY: install
install: $(STAMP) ## Create the venv and install the project with its dev tools

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
check: lint test ## What CI runs, less the container test

.PHONY: clean
clean: ## Remove the venv, caches and local databases
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

-include mk/*.mk
