# The two commands: `make run` (serve the demo) and `make test` (everything CI checks).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# daphne's listen backlog (Twisted's default, 50, drops connections when ~200 clients connect at once).
# An IPv6 HOST needs its colons escaped for the endpoint string: HOST='\:\:1'.
BACKLOG ?= 1024

.PHONY: run test install install-dev lint typecheck pytest fuzz migrate demo clean axe lighthouse messages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py load_demo

# The background worker (notification retries, urgent-alert escalation, heartbeat) runs beside daphne
# under a supervisor that restarts it whenever it dies, and stops with daphne.
run: demo
	@echo "Serving the portal on http://$(HOST):$(PORT)  (Ctrl-C to stop)"
	$(BIN)/python manage.py supervise_worker -- -v 0 & worker=$$!; \
	trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(BIN)/daphne -e tcp:port=$(PORT):interface=$(HOST):backlog=$(BACKLOG) portal.asgi:application

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install-dev
	$(BIN)/mypy

# axe-core (accessibility rules) for the web app's browser test, from the npm registry into the
# git-ignored node_modules/. Without npm the browser test skips (unless PORTAL_BROWSER_TESTS is set).
AXE_VERSION := 4.14.1
node_modules/axe-core/axe.min.js:
	@if command -v npm >/dev/null 2>&1; then \
		npm install --prefix . --no-save --no-package-lock --no-audit --no-fund axe-core@$(AXE_VERSION); \
	else echo "npm not found: the web app's browser test will skip"; fi
axe: node_modules/axe-core/axe.min.js

# Lighthouse for tests/benchmarks/bench_lighthouse.py (the "today" page on a throttled phone profile),
# from the npm registry into the same node_modules/, with Debian's chromium. 12.2.x runs on Node 18/20
# (later majors need Node 22). axe-core is named again so that npm keeps it in the tree.
LIGHTHOUSE_VERSION := 12.2.3
node_modules/.bin/lighthouse:
	npm install --prefix . --no-save --no-package-lock --no-audit --no-fund \
		axe-core@$(AXE_VERSION) lighthouse@$(LIGHTHOUSE_VERSION)
lighthouse: node_modules/.bin/lighthouse

# The web app's Spanish catalogue: web/locale/es/LC_MESSAGES/django.mo is committed; after editing the
# .po, this recompiles it (GNU gettext's msgfmt, through Django).
messages: install
	cd web && ../$(BIN)/django-admin compilemessages -l es --settings=portal.settings --pythonpath=..

# The suite's whole log goes to var/test.log, which must hold none of the planted PHI canaries.
pytest: install-dev axe
	mkdir -p var
	$(BIN)/pytest --log-file=var/test.log --log-file-level=DEBUG
	$(BIN)/python -m tests.canaries var/test.log

# Schemathesis over every API operation, signed in as a demo guardian: no server error, only declared
# statuses. PORTAL_FUZZ_EXAMPLES bounds the generated cases per operation (default 20).
fuzz: install-dev
	PORTAL_FUZZ=1 $(BIN)/pytest tests/contract

test: lint typecheck pytest fuzz

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
