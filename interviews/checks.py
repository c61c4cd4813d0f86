"""System checks for the question source and the LLM time budget.

A token is reserved while a question is generated, and the reservation expires after
HOLD_TTL_SECONDS. The slowest possible generation (every attempt timing out, every retry and
regeneration used) must finish well inside that, or a reservation could expire under a request
that is still running.

    mockroom.E001  QUESTION_SOURCE=openai and the worst case reaches 80% of HOLD_TTL_SECONDS
    mockroom.E002  QUESTION_SOURCE is neither "bank" nor "openai"
    mockroom.E003  QUESTION_SOURCE=openai with neither OPENAI_API_KEY nor OPENAI_BASE_URL
    mockroom.E004  an LLM or reservation number out of range (a timeout <= 0, retries < 0, ...)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from interviews.budget import HOLD_TTL_SHARE, MAX_BACKOFF_SECONDS

SOURCES = ("bank", "openai")

_SECONDS = "a number of seconds greater than 0"
_COUNT = "an integer of 0 or more"
# (setting, integer only?, must be greater than, description): HOLD_TTL_SECONDS always matters,
# the LLM numbers only when the LLM is the question source.
_RESERVATION_NUMBERS = [("HOLD_TTL_SECONDS", True, 0, _SECONDS)]
_LLM_NUMBERS = [
    ("LLM_TIMEOUT_SECONDS", False, 0, _SECONDS),
    ("LLM_MAX_RETRIES", True, -1, _COUNT),
    ("LLM_MAX_REGENERATIONS", True, -1, _COUNT),
]


def _number_errors(rules: list[tuple[str, bool, int, str]]) -> list[CheckMessage]:
    """E004 for each numeric setting without a sane value."""
    errors: list[CheckMessage] = []
    for name, integer, above, wanted in rules:
        value = getattr(settings, name, None)
        numeric = (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
        if integer and numeric and value != int(value):  # type: ignore[arg-type]
            numeric = False
        if not numeric or value <= above:  # type: ignore[operator]  # numeric: a number
            errors.append(
                Error(
                    f"{name} is {value!r}; it must be {wanted}.",
                    hint=f"Set {name} in the environment or .env.",
                    id="mockroom.E004",
                )
            )
    return errors


@register("mockroom")
def check_question_source(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """The question source is known, configured, and fits the reservation's lifetime."""
    source = getattr(settings, "QUESTION_SOURCE", None)
    if source not in SOURCES:
        return [
            Error(
                f"QUESTION_SOURCE is {source!r}; it must be 'bank' or 'openai'.",
                hint="Set QUESTION_SOURCE=bank for the built-in questions, or openai for an LLM.",
                id="mockroom.E002",
            )
        ]

    errors = _number_errors(_RESERVATION_NUMBERS)
    if source != "openai":
        return errors
    errors += _number_errors(_LLM_NUMBERS)

    if not (settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL):
        errors.append(
            Error(
                "QUESTION_SOURCE is 'openai' but neither OPENAI_API_KEY nor OPENAI_BASE_URL "
                "is set.",
                hint="Set OPENAI_API_KEY, or OPENAI_BASE_URL for a local OpenAI-compatible "
                "server (Ollama, vLLM, LM Studio), or use QUESTION_SOURCE=bank.",
                id="mockroom.E003",
            )
        )

    if errors:  # the budget cannot be computed from nonsense
        return errors

    from interviews.llm import worst_case_seconds

    worst = worst_case_seconds()
    limit = settings.HOLD_TTL_SECONDS * HOLD_TTL_SHARE
    if worst >= limit:
        errors.append(
            Error(
                f"A question request can take up to {worst:g}s, but token reservations expire "
                f"after HOLD_TTL_SECONDS={settings.HOLD_TTL_SECONDS}s; generation must finish "
                f"within {HOLD_TTL_SHARE:.0%} of it ({limit:g}s).",
                hint="Lower LLM_TIMEOUT_SECONDS, LLM_MAX_RETRIES or LLM_MAX_REGENERATIONS, "
                f"or raise HOLD_TTL_SECONDS. The worst case is (1 + LLM_MAX_REGENERATIONS) x "
                f"((1 + LLM_MAX_RETRIES) x LLM_TIMEOUT_SECONDS + LLM_MAX_RETRIES x "
                f"{MAX_BACKOFF_SECONDS:g}s backoff).",
                id="mockroom.E001",
            )
        )
    return errors
