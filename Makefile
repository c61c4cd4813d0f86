SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Settings require SECRET_KEY when DEBUG is off; tests and benchmarks get a
# throwaway one unless the environment provides its own.
TEST_SECRET_KEY := insecure-test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz

.PHONY: venv devvenv lock run migrate serve worker test lint bench clean

# --- Environments -------------------------------------------------------------

venv: $(VENV)/.installed

devvenv: $(VENV)/.dev-installed

# Python 3.13: python3.13 on PATH (pyenv shims honour .python-version), else a
# pyenv-installed 3.13. An existing .venv on another Python is recreated.
$(VENV)/.installed: requirements.txt
	@if ! { [ -x $(PY) ] && $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; }; then \
		py=""; \
		for cand in "$$(command -v python3.13 2>/dev/null || true)" \
			$$(compgen -G "$${PYENV_ROOT:-$(HOME)/.pyenv}/versions/3.13*/bin/python3.13" | sort -rV); do \
			if [ -n "$$cand" ] && "$$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then \
				py="$$cand"; break; \
			fi; \
		done; \
		if [ -z "$$py" ]; then \
			echo "Python 3.13 not found: install it (e.g. 'pyenv install 3.13') and re-run make." >&2; \
			exit 1; \
		fi; \
		echo "Creating $(VENV) with $$py"; \
		"$$py" -m venv --clear $(VENV); \
	fi
	$(PY) -m pip install -q --require-hashes -r requirements.txt
	@touch $@

# The development tools, and tracing's optional packages (the tests exercise it: `make otel`).
$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.txt requirements-otel.txt
	$(PY) -m pip install -q --require-hashes -r requirements-dev.txt
	$(PY) -m pip install -q --require-hashes -r requirements-otel.txt
	@touch $@

# The lockfiles: requirements.txt (what runs) and requirements-dev.txt (that, plus the tests' and
# linters' tools) pin the whole dependency tree, with hashes, compiled from the top-level
# requirements.in and requirements-dev.in; requirements-otel.txt (tracing's optional packages,
# `make otel`) from requirements-otel.in, against both. After editing a .in file: `make lock`. To
# move a pin that is already locked: `make lock LOCK_ARGS="--upgrade-package django"`.
LOCK_ARGS ?=
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS)
lock: devvenv
	$(PIP_COMPILE) --output-file requirements.txt requirements.in
	$(PIP_COMPILE) --output-file requirements-dev.txt requirements-dev.in
	$(PIP_COMPILE) --output-file requirements-otel.txt requirements-otel.in

# --- Running ------------------------------------------------------------------

run: venv
	DEBUG="$${DEBUG:-true}" $(PY) manage.py migrate --noinput
	DEBUG="$${DEBUG:-true}" $(PY) manage.py runserver 127.0.0.1:$${PORT:-8000}

# The release step, once per deploy and never part of a server's start (many servers can share
# one database and start at once): apply migrations (which also load the question bank).
# In production run it as the migration role, the owner of the schema (DATABASE_URL=its URL
# make migrate); with DATABASE_RUNTIME_ROLE set, the app servers' role is then granted what the
# app needs and only SELECT and INSERT on ledger entries (README, "Database roles").
migrate: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py grant_runtime_role --if-configured

# Static files are collected (hashed, compressed) on each machine when static/ changed.
STATIC_MANIFEST := staticfiles/staticfiles.json
$(STATIC_MANIFEST): $(shell find static -type f 2>/dev/null) | venv
	@$(PY) manage.py collectstatic --noinput -v0

# Production: gunicorn managing WEB_CONCURRENCY uvicorn (ASGI) workers. A candidate waiting on
# the model costs a coroutine, not a thread, and no database connection (see README, "Serving").
# Its options, and the metrics directory its workers share, are in deploy/gunicorn.conf.py.
# Needs SECRET_KEY (and usually DATABASE_URL, ALLOWED_HOSTS) in the environment or in .env, and
# a migrated database (`make migrate`).
serve: venv $(STATIC_MANIFEST)
	@$(PY) manage.py check >/dev/null
	@$(PY) manage.py migrate --check --skip-checks >/dev/null || { \
		echo "make serve: the database is not migrated: run 'make migrate' (the release step) first." >&2; \
		exit 1; }
	@$(VENV)/bin/gunicorn -c deploy/gunicorn.conf.py config.asgi:application

# Production, once per deployment (app servers run `make serve`): the background work (README,
# "Background work"). A task worker runs the "default" queue (sweepers, alerts), one the "speech"
# queue (spoken answers to transcribe), PREFETCH_WORKERS (2) more the "prefetch" queue (the next
# questions to prepare, each a model call); the
# scheduler enqueues the periodic tasks when due (once per period, however many schedulers run).
# When one stops, all stop, so a supervisor that restarts `make worker` restarts them together.
# Same environment as `make serve`, and a migrated database.
worker: venv
	@$(PY) manage.py check >/dev/null
	@$(PY) manage.py migrate --check --skip-checks >/dev/null || { \
		echo "make worker: the database is not migrated: run 'make migrate' (the release step) first." >&2; \
		exit 1; }
	@$(PY) manage.py run_scheduler & \
	$(PY) manage.py db_worker --queue-name default & \
	$(PY) manage.py db_worker --queue-name speech & \
	for n in $$(seq $${PREFETCH_WORKERS:-2}); do $(PY) manage.py db_worker --queue-name prefetch & done; \
	trap 'kill -TERM $$(jobs -p) 2>/dev/null || true' INT TERM; \
	status=0; wait -n || status=$$?; \
	kill -TERM $$(jobs -p) 2>/dev/null || true; \
	wait || true; \
	exit $$status

# The code questions' editor: CodeMirror 6 from the exact versions in editor/package-lock.json,
# bundled into static/js/vendor/codemirror.js (+ LICENSE-codemirror). Both are committed, so
# running and deploying need no Node; only changing the editor's packages does (Node 18+, npm).
.PHONY: editor
editor:
	cd editor && npm ci --no-audit --no-fund && node build.mjs

# Voice answers transcribed on this server's CPU (TRANSCRIBE_BACKEND=local, the default with no
# API key): faster-whisper, CTranslate2 and ONNX Runtime from requirements-voice.txt (pinned by
# hash), an optional install kept out of `make run`'s. Without it the local engine is off and the
# record button says to run this.
.PHONY: voice
voice: venv
	$(PY) -m pip install -q --require-hashes -r requirements-voice.txt

# Tracing with OpenTelemetry (OTEL_EXPORTER_OTLP_ENDPOINT, README "Tracing (optional)"): the SDK,
# the OTLP exporter and the instrumentations from requirements-otel.txt (pinned by hash, as one
# set), an optional install kept out of `make run`'s. With the variable set and this not
# installed, each process says to run this and traces nothing.
.PHONY: otel
otel: venv
	$(PY) -m pip install -q --require-hashes -r requirements-otel.txt

# Browser tests use Debian's chromium (CHROMIUM_PATH); `playwright install`
# cannot download browsers here. PostgreSQL comes from .ci/with-postgres.
test: devvenv
	.ci/ensure-sandbox
	.ci/ensure-deploy-tools
	CHROMIUM_PATH="$$(.ci/ensure-chromium)"; \
	export CHROMIUM_PATH; \
	SECRET_KEY="$${SECRET_KEY:-$(TEST_SECRET_KEY)}" DB_POOL_MAX_SIZE="$${DB_POOL_MAX_SIZE:-40}" \
		.ci/with-postgres $(PY) -m pytest $(PYTEST_ARGS)

# mypy loads the settings (django-stubs): they need a SECRET_KEY, any will do.
lint: devvenv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	SECRET_KEY="$${SECRET_KEY:-$(TEST_SECRET_KEY)}" $(VENV)/bin/mypy .

# In-process benchmarks (their threads each hold a connection: a pool as large as the tests'),
# then the load benchmark, which starts the servers with their production settings.
bench: devvenv
	SECRET_KEY="$${SECRET_KEY:-$(TEST_SECRET_KEY)}" DB_POOL_MAX_SIZE=40 .ci/with-postgres $(PY) bench/run.py
	SECRET_KEY="$${SECRET_KEY:-$(TEST_SECRET_KEY)}" .ci/with-postgres $(PY) bench/load.py
	SECRET_KEY="$${SECRET_KEY:-$(TEST_SECRET_KEY)}" .ci/with-postgres $(PY) bench/prefetch.py
	SECRET_KEY="$${SECRET_KEY:-$(TEST_SECRET_KEY)}" .ci/with-postgres $(PY) bench/per_request.py
	SECRET_KEY="$${SECRET_KEY:-$(TEST_SECRET_KEY)}" .ci/with-postgres $(PY) bench/code_runs.py
	SECRET_KEY="$${SECRET_KEY:-$(TEST_SECRET_KEY)}" .ci/with-postgres $(PY) bench/voice_draft.py
	SECRET_KEY="$${SECRET_KEY:-$(TEST_SECRET_KEY)}" $(PY) bench/sandbox.py
	SECRET_KEY="$${SECRET_KEY:-$(TEST_SECRET_KEY)}" $(PY) bench/speech.py

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles .pytest_cache .mypy_cache
