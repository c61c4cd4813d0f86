"""System checks of the project's own settings.

mockroom.W001 (deploy): DEBUG is off and REDIS_URL is not set, so the rate and in-flight limits
count in each process's memory and N processes allow N times the limits.
mockroom.W003 (deploy): Django's security.W001-W003 look for their middleware by dotted path;
MIDDLEWARE lists the same classes adapted to the event loop (config.middleware), so those three
are silenced and this check asks the same of the classes themselves.
mockroom.E002: CSRF_USE_SESSIONS is on, but the CSRF middleware runs in the event loop under
ASGI (config.middleware), where reading the session would block it: the secret is a cookie.
"""

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register


@register(Tags.caches, "mockroom", deploy=True)
def check_shared_cache(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """The limits need a cache every app process shares."""
    if settings.DEBUG or getattr(settings, "REDIS_URL", ""):
        return []
    return [
        Warning(
            "REDIS_URL is not set: the rate limits and the in-flight limit on model calls are "
            "counted in each process's memory, so every app process allows the full limits "
            "on its own.",
            hint="Set REDIS_URL to a Redis server all app processes share, e.g. "
            "redis://127.0.0.1:6379/0.",
            id="mockroom.W001",
        )
    ]


@register(Tags.security, "mockroom")
def check_csrf_in_cookie(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """config.middleware runs the CSRF checks in the event loop: they must not read the session."""
    if not getattr(settings, "CSRF_USE_SESSIONS", False):
        return []
    return [
        Error(
            "CSRF_USE_SESSIONS is on: the CSRF middleware runs in the event loop under ASGI "
            "(config.middleware) and would read the session there.",
            hint="Leave CSRF_USE_SESSIONS off: the CSRF secret lives in its cookie.",
            id="mockroom.E002",
        )
    ]


# Django's own middleware whose presence its deploy checks (security.W001-W003) ask for.
REQUIRED_MIDDLEWARE = {
    "django.middleware.security.SecurityMiddleware": "security.W001",
    "django.middleware.clickjacking.XFrameOptionsMiddleware": "security.W002",
    "django.middleware.csrf.CsrfViewMiddleware": "security.W003",
}


@register(Tags.security, "mockroom", deploy=True)
def check_security_middleware(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """What security.W001-W003 check, by class rather than by dotted path."""
    from django.utils.module_loading import import_string

    installed = [import_string(path) for path in settings.MIDDLEWARE]
    return [
        Warning(
            f"No {path} (nor a subclass of it) in MIDDLEWARE: the protection Django's {check} "
            "asks for is off.",
            id="mockroom.W003",
        )
        for path, check in REQUIRED_MIDDLEWARE.items()
        if not any(isinstance(m, type) and issubclass(m, import_string(path)) for m in installed)
    ]


def checks_enforce() -> None:
    """Refuse to start a server whose settings fail a system check (an Error, not silenced):
    `runserver` and management commands run the checks themselves, gunicorn and uvicorn do
    not. Deploy-only checks stay `check --deploy`'s."""
    from django.core.checks import run_checks
    from django.core.management.base import SystemCheckError

    serious = [message for message in run_checks() if message.is_serious()]
    serious = [message for message in serious if not message.is_silenced()]
    if serious:
        raise SystemCheckError(
            "The server does not start: system check errors.\n"
            + "\n".join(str(message) for message in serious)
        )
