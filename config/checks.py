"""System checks of the project's own settings.

mockroom.W001 (deploy): DEBUG is off and REDIS_URL is not set, so the rate and in-flight limits
count in each process's memory and N processes allow N times the limits.
"""

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


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
