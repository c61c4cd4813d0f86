"""The shared cache in Redis (the README's production setup): sessions read from it, written
through to the database, and one Redis client per process (config.cache)."""

import contextvars
import os
import subprocess
import sys
import uuid

import pytest
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.test import Client
from django.urls import reverse

from config.testing import redis_url

LOGIN = "/accounts/login/"


@pytest.fixture
def redis_cache(settings):
    """The production cache and sessions: config.cache.RedisCache, cached_db sessions."""
    with redis_url() as url:
        settings.REDIS_URL = url
        settings.CACHES = {
            "default": {
                "BACKEND": "config.cache.RedisCache",
                "LOCATION": url,
                "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
            }
        }
        settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
        yield url


def test_the_readme_production_environment_reads_sessions_from_redis():
    """With REDIS_URL: cached_db sessions and the shared client; without: the database."""
    from config.tests.test_production import PRODUCTION, ROOT

    show = (
        "from django.conf import settings; "
        "print(settings.SESSION_ENGINE, settings.CACHES['default']['BACKEND'])"
    )
    engines = []
    for redis in (PRODUCTION["REDIS_URL"], ""):
        env = {"PATH": os.environ.get("PATH", ""), **PRODUCTION, "REDIS_URL": redis}
        env["DJANGO_SETTINGS_MODULE"] = "config.settings"
        result = subprocess.run(
            [sys.executable, "-c", f"import django; django.setup(); {show}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        engines.append(result.stdout.split())
    assert engines == [
        ["django.contrib.sessions.backends.cached_db", "config.cache.RedisCache"],
        ["django.contrib.sessions.backends.db", "django.core.cache.backends.locmem.LocMemCache"],
    ]


def test_login_and_logout_with_the_sessions_in_redis(redis_cache, make_user):
    make_user(email="ada@example.com", password="Quiet-Harbor-42")
    client = Client()
    response = client.post(LOGIN, {"login": "ada@example.com", "password": "Quiet-Harbor-42"})
    assert response.status_code == 302
    key = client.cookies["sessionid"].value
    # Written through: the database keeps the record, Redis serves the reads.
    assert Session.objects.filter(session_key=key).exists()
    assert caches["default"].get(f"django.contrib.sessions.cached_db{key}") is not None
    assert client.get(reverse("interviews:dashboard")).status_code == 200

    assert client.post("/accounts/logout/").status_code == 302
    assert not Session.objects.filter(session_key=key).exists()
    assert caches["default"].get(f"django.contrib.sessions.cached_db{key}") is None
    assert client.get(reverse("interviews:dashboard")).status_code == 302
    # The old cookie opens nothing either.
    stale = Client()
    stale.cookies["sessionid"] = key
    assert stale.get(reverse("interviews:dashboard")).status_code == 302


def test_a_session_missing_from_redis_is_read_from_the_database(redis_cache, make_user):
    user = make_user()
    client = Client()
    client.force_login(user)
    key = client.cookies["sessionid"].value
    caches["default"].delete(f"django.contrib.sessions.cached_db{key}")  # say Redis restarted
    # Nobody is logged out: the session is read from the database (and put back in Redis).
    assert client.get(reverse("interviews:dashboard")).status_code == 200
    assert caches["default"].get(f"django.contrib.sessions.cached_db{key}") is not None


def test_every_request_context_shares_the_process_redis_client(redis_cache):
    """Django keeps a cache object per request context; their Redis client (and its
    connections) is made once per process."""

    def client_of_a_new_context():
        return contextvars.Context().run(lambda: caches["default"]._cache)

    first, second = client_of_a_new_context(), client_of_a_new_context()
    assert first is second
    key = f"test-shared-{uuid.uuid4().hex}"
    caches["default"].set(key, 1, 30)
    assert contextvars.Context().run(lambda: caches["default"].get(key)) == 1
