SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Settings require SECRET_KEY when DEBUG is off; tests and benchmarks get a
# throwaway one unless the environment provides its own.
TEST_SECRET_KEY := insecure-test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz

.PHONY: venv devvenv run serve test lint bench clean

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
	$(PY) -m pip install --upgrade pip -q
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

# --- Running ------------------------------------------------------------------

run: venv
	DEBUG="$${DEBUG:-true}" $(PY) manage.py migrate --noinput
	DEBUG="$${DEBUG:-true}" $(PY) manage.py runserver 127.0.0.1:$${PORT:-8000}

# Production-like: gunicorn with WhiteNoise static files. Needs SECRET_KEY (and usually
# DATABASE_URL, ALLOWED_HOSTS) in the environment or in .env.
serve: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v0
	$(VENV)/bin/gunicorn config.wsgi --bind 0.0.0.0:$${PORT:-8000} --workers $${WEB_CONCURRENCY:-2} \
		--worker-class gthread --threads $${GUNICORN_THREADS:-8} --graceful-timeout 60 --access-logfile -

# Browser tests use Debian's chromium (CHROMIUM_PATH); `playwright install`
# cannot download browsers here. PostgreSQL comes from .ci/with-postgres.
test: devvenv
	CHROMIUM_PATH="$$(.ci/ensure-chromium)"; \
	export CHROMIUM_PATH; \
	SECRET_KEY="$${SECRET_KEY:-$(TEST_SECRET_KEY)}" .ci/with-postgres $(PY) -m pytest $(PYTEST_ARGS)

lint: devvenv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: devvenv
	SECRET_KEY="$${SECRET_KEY:-$(TEST_SECRET_KEY)}" .ci/with-postgres $(PY) bench/run.py

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles .pytest_cache
