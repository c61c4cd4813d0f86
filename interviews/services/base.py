"""What every flow of the candidate's actions shares: a database step that hands its connection
back when it ends, and the candidate's in-flight model calls.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import TYPE_CHECKING

from django.conf import settings

from config.db import connection_hand_back
from config.limits import in_flight

if TYPE_CHECKING:
    pass


# What a candidate over LLM_MAX_IN_FLIGHT_PER_USER is told, and when to try again (seconds).
IN_FLIGHT_REFUSED = "You already have a question or feedback being prepared"
IN_FLIGHT_RETRY_AFTER = 5


def model_call_slot(*, user_id: int, calls_model: bool) -> AbstractAsyncContextManager[None]:
    """One of the candidate's LLM_MAX_IN_FLIGHT_PER_USER model calls, all processes together,
    held for the body; Limited at once when they are all taken. The slot frees itself after
    HOLD_TTL_SECONDS (the longest a call may take) if its process dies."""
    if not calls_model:
        return nullcontext()
    return in_flight(
        f"model-calls:user:{user_id}",
        limit=settings.LLM_MAX_IN_FLIGHT_PER_USER,
        ttl=settings.HOLD_TTL_SECONDS,
        what=IN_FLIGHT_REFUSED,
        retry_after=IN_FLIGHT_RETRY_AFTER,
    )


def db_step[**P, T](step: Callable[P, T]) -> Callable[P, T]:
    """A database step of a flow that waits on the model in between: it runs synchronously (in
    the request's thread) and gives its connection back to the pool when it ends, so that no
    connection is held while the model runs (config.db.connection_hand_back)."""

    @functools.wraps(step)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return step(*args, **kwargs)
        finally:
            connection_hand_back()

    return run
