"""The production settings: what the README's production environment gives, and the policies
every response follows."""

import logging
import os
import subprocess
import sys
from pathlib import Path

from django.test import Client
from django.urls import reverse

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
