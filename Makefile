# Needs only Python 3.11+ (and make). `uv` is used from PATH, else installed into .tools/ with pip.
#   make install       dependencies into .venv (idempotent; instant when uv.lock and pyproject.toml are unchanged)
#   make run           the whole engine locally: embedded Redis + PostgreSQL, migrations, every service
#   make test          deploy-check, then the test suite
#   make deploy-check  validate compose.yaml and lint deploy/Dockerfile
#   make lint          ruff

PYTHON ?= python3
UV ?= $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
UV_SYNC_FLAGS ?= --locked
UV_RUN := $(UV) run --no-sync
PYTEST_ARGS ?= -q

.DEFAULT_GOAL := help
.PHONY: help install run test deploy-check lint

help:
	@sed -n 's/^#   /  /p' $(MAKEFILE_LIST)

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv

# The stamp lives inside .venv: deleting the venv, or changing the lock or pyproject, syncs again.
.venv/.make-synced: pyproject.toml uv.lock | $(filter .tools/bin/uv,$(UV))
	$(UV) sync $(UV_SYNC_FLAGS)
	@touch $@

install: .venv/.make-synced

run: install
	$(UV_RUN) python -m deploy.local

deploy-check: install
	$(UV_RUN) docker-compose --file compose.yaml config --quiet
	$(UV_RUN) hadolint deploy/Dockerfile
	@echo "deploy-check: compose.yaml and deploy/Dockerfile OK"

# pytest exits 5 when it collected no test: not a failure while the suite is empty.
test: install deploy-check
	$(UV_RUN) pytest $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ] && echo "pytest: no tests collected"; [ $$rc -eq 5 ]; }

lint: install
	$(UV_RUN) ruff check .
