"""Fixtures shared by every app's tests. The suite runs on PostgreSQL (`make test` provides one)."""

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections
from django.test import override_settings

# The fake OpenAI-compatible server (fixture `fake_openai`) for any test that needs the LLM.
pytest_plugins = ["interviews.tests.fake_openai"]

_emails = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        raise pytest.UsageError(
            "The tests need PostgreSQL (row locks, triggers): run `make test`, or set "
            f"DATABASE_URL / TEST_DATABASE_URL to a PostgreSQL server (got {engine})."
        )
    # The tests' cache is this process's memory, whatever REDIS_URL says (one test uses a real
    # Redis on purpose: config/tests/test_limits.py); it is emptied before each test.
    override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    ).enable()


@pytest.fixture(autouse=True)
def _test_settings(settings) -> None:
    """Fast password hashing; templates render without running collectstatic first. Signup
    grants the welcome tokens at once and the admin opens without a second factor, unless a
    test says otherwise (accounts/tests cover verification and two-factor)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ACCOUNT_EMAIL_VERIFICATION = "none"
    settings.STAFF_MFA_REQUIRED = False
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Rate and in-flight counters do not leak from one test into the next."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def make_user(db, settings) -> Callable:
    """make_user(tokens=3) -> a candidate signed up with that many welcome tokens."""

    from accounts.services import user_signup

    def make(*, tokens: int = 10, email: str | None = None, password: str = "correct horse 9"):
        settings.WELCOME_TOKENS = tokens
        return user_signup(
            email=email or f"candidate{next(_emails)}@example.com", password=password
        )

    return make


@pytest.fixture
def staff_user(db):
    from accounts.models import User

    return User.objects.create_superuser(email="staff@example.com", password="staff password 9")


def run_concurrently[T](fn: Callable[[int], T], count: int) -> list[T | BaseException]:
    """Run fn(0..count-1) in `count` threads released together; collect results or exceptions.

    Each thread closes its own database connection, as Django's select_for_update tests do.
    """
    barrier = threading.Barrier(count)

    def worker(index: int) -> T | BaseException:
        try:
            barrier.wait(timeout=30)
            return fn(index)
        except BaseException as exc:  # collected for the test to inspect
            return exc
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(worker, range(count)))


def assert_no_transaction_open() -> None:
    """What a fake generator calls: the LLM must never run inside a database transaction."""
    # The test case's own wrapping transaction (marked _from_testcase) does not count.
    open_blocks = [b for b in connection.atomic_blocks if not getattr(b, "_from_testcase", False)]
    assert not open_blocks, "a database transaction is open during generation"
