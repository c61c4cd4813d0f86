"""The LLM time budget as plain arithmetic: settings derive the reservations' lifetime from it
before any app is loaded, the LLM client keeps to it, and a system check holds both together.

    one call     (1 + LLM_MAX_RETRIES) x LLM_TIMEOUT_SECONDS + LLM_MAX_RETRIES x 5 s backoff
    a question   (1 + LLM_MAX_REGENERATIONS) x one call
    reservation  the worst case is at most HOLD_TTL_SHARE of HOLD_TTL_SECONDS
"""

import math

#: The longest pause between two attempts, whatever a server's Retry-After asks for.
MAX_BACKOFF_SECONDS = 5.0
#: The share of HOLD_TTL_SECONDS the worst-case generation may use.
HOLD_TTL_SHARE = 0.8
#: A reservation never lives shorter than this (the bank source needs almost nothing).
MIN_HOLD_TTL_SECONDS = 60


def call_budget_seconds(*, timeout: float, max_retries: int) -> float:
    """The longest one model call may take: every attempt plus every pause between them."""
    return (1 + max_retries) * timeout + max_retries * MAX_BACKOFF_SECONDS


def worst_case_seconds(*, timeout: float, max_retries: int, regenerations: int) -> float:
    """The longest one question request can take, regenerations included."""
    return (1 + max(0, regenerations)) * call_budget_seconds(
        timeout=timeout, max_retries=max(0, max_retries)
    )


def hold_ttl_seconds(*, worst_case: float) -> int:
    """A reservation's lifetime for a given worst case: just long enough that the worst case
    stays within HOLD_TTL_SHARE of it, so a crashed request's token comes back soon."""
    return max(MIN_HOLD_TTL_SECONDS, math.floor(worst_case / HOLD_TTL_SHARE) + 1)
