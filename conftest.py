"""Fixtures shared by every app's tests. The suite runs on PostgreSQL (`make test` provides one)."""

import itertools
from collections.abc import Callable

import pytest
from django.test import override_settings

from config.testing import atomic_baseline_record, question_bank_copy

# The fake OpenAI-compatible server (fixture `fake_openai`) for any test that needs the LLM, and
# the fake Stripe API (fixture `fake_stripe`) for purchases.
pytest_plugins = ["interviews.tests.fake_openai", "payments.tests.fake_stripe"]

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
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        REDIS_URL="",
    ).enable()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker) -> None:
    """The question bank is loaded once per test database, by migrate. A transactional test
    empties every table when it ends, and post_migrate then loads the bank again: here from a
    copy taken once, in two bulk inserts, instead of reading the files and saving 240 rows."""
    from django.apps import apps
    from django.db.models.signals import post_migrate

    interviews = apps.get_app_config("interviews")
    with django_db_blocker.unblock():
        restore = question_bank_copy()
    post_migrate.disconnect(sender=interviews, dispatch_uid="load_question_bank")
    post_migrate.connect(restore, sender=interviews, dispatch_uid="load_question_bank", weak=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """The fixtures are set up: the atomic blocks open now are the test case's own, which
    `config.testing.assert_no_transaction_open` does not count."""
    atomic_baseline_record()
    return (yield)


@pytest.fixture(autouse=True)
def _test_settings(settings) -> None:
    """Fast password hashing; templates render without running collectstatic first; voice
    answers off. Signup
    grants the welcome tokens at once and the admin opens without a second factor, unless a
    test says otherwise (accounts/tests cover verification and two-factor)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Voice answers off unless a test turns them on (fake_transcriber): the pages are the same
    # whether or not this machine has the local engine (`make voice`).
    from interviews.speech.engines import engine_reset

    settings.TRANSCRIBE_BACKEND = "off"
    engine_reset()
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
