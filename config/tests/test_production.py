"""The production settings: what the README's production environment gives, and the policies
every response follows."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User

ROOT = Path(__file__).resolve().parents[2]

# The README's production environment (plain values where it says "...").
PRODUCTION = {
    "SECRET_KEY": "a-long-random-production-secret-0123456789-abcdefghijklmnopqrstuvwxyz",
    "DEBUG": "false",
    "DATABASE_URL": "postgres://mockroom@127.0.0.1:5432/mockroom",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "ALLOWED_HOSTS": "mockroom.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://mockroom.example.com",
    "BEHIND_TLS_PROXY": "true",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "WEB_CONCURRENCY": "2",
    "PORT": "8000",
}


def test_check_deploy_is_clean_under_the_readme_production_environment():
    env = {"PATH": os.environ.get("PATH", ""), **PRODUCTION}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_logged_in_pages_are_private_to_the_browser(make_user):
    client = Client()
    client.force_login(make_user())
    response = client.get(reverse("interviews:dashboard"))
    assert "private" in response["Cache-Control"]
    assert "Cookie" in response["Vary"]


def test_a_page_that_sets_its_own_caching_keeps_it(client, db):
    assert "no-store" in client.get("/healthz")["Cache-Control"]


def test_a_bad_host_header_logs_one_line_without_a_traceback(client, db, caplog):
    with caplog.at_level(logging.ERROR, logger="django.security.DisallowedHost"):
        response = client.get("/", HTTP_HOST="evil.example.net")
    assert response.status_code == 400
    records = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert len(records) == 1
    handler = logging.getLogger("django.security.DisallowedHost").handlers[0]
    assert all(f.filter(records[0]) for f in handler.filters)
    assert records[0].exc_info is None
    assert "evil.example.net" in records[0].getMessage()


def database_options(**env: str) -> dict:
    """What the settings give the PostgreSQL driver for prepared statements, under the README's
    production environment and `env`."""
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        "options = settings.DATABASES['default']['OPTIONS']; "
        "print(json.dumps([options.get('server_side_binding'), options.get('prepare_threshold')]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", ""),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            **PRODUCTION,
            **env,
        },
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def test_statements_are_prepared_on_the_server_unless_turned_off():
    assert database_options() == [True, 5]
    assert database_options(DB_PREPARED_STATEMENTS="false") == [None, None]


def test_a_statement_run_a_few_times_is_prepared_once(db):
    """With PostgreSQL (the suite's database), the sixth run of a statement on a connection
    uses the statement prepared by the fifth: the server no longer parses and plans it."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    user = User.objects.create_user(email="prepared@example.com", password="x" * 12)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        before = cursor.fetchone()[0]
        for _ in range(6):
            assert User.objects.get(pk=user.pk) == user
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cursor.fetchone()[0] > before
