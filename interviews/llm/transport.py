"""The model's transport: one client per event loop, at most LLM_MAX_CONCURRENCY calls in flight
per process, and retries of transport failures inside a fixed time budget.

Each attempt may take LLM_TIMEOUT_SECONDS on the wall clock (`asyncio.timeout`: a server that
trickles bytes cannot hold a request), and at most LLM_MAX_RETRIES retries follow, so a token
reservation held during generation (HOLD_TTL_SECONDS) always outlives the call; the openai
client's own retries are switched off. interviews.budget has the arithmetic.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import logging
import math
import ssl
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import Final

import openai
from django.conf import settings
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from openai.types.shared_params import ResponseFormatJSONSchema

from config.metrics import MODEL_CALLS_IN_FLIGHT
from interviews import budget
from interviews.budget import MAX_BACKOFF_SECONDS
from interviews.exceptions import Reason
from interviews.llm.errors import LLMError

logger = logging.getLogger("interviews.llm")

# An attempt with less time than this left in the budget is not worth starting.
_MIN_ATTEMPT_SECONDS: Final[float] = 0.1
# Placeholder key for local servers that ignore authentication (the client insists on one).
_LOCAL_API_KEY: Final[str] = "not-needed"


# --- Settings and the client ---------------------------------------------------------------------


def _timeout_seconds() -> float:
    return float(settings.LLM_TIMEOUT_SECONDS)


def _max_retries() -> int:
    return max(0, int(settings.LLM_MAX_RETRIES))


def _call_budget_seconds(*, timeout: float, max_retries: int) -> float:
    return budget.call_budget_seconds(timeout=timeout, max_retries=max_retries)


def worst_case_seconds() -> float:
    """The longest one question request can take with the current settings, regenerations
    included (interviews.budget has the formula)."""
    return budget.worst_case_seconds(
        timeout=_timeout_seconds(),
        max_retries=_max_retries(),
        regenerations=int(settings.LLM_MAX_REGENERATIONS),
    )


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context per process: loading the CA store costs tens of milliseconds."""
    return ssl.create_default_context()


# An async client belongs to the event loop it first ran in (its connection pool does), so the
# clients are kept per loop: one for the life of an ASGI worker, one per call for sync callers.
_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str | None, float], openai.AsyncOpenAI]
] = weakref.WeakKeyDictionary()


def get_client() -> openai.AsyncOpenAI:
    """The running event loop's client for the current settings.

    Cached per (api key, base URL, timeout), so changing the settings (as tests do) gives a new
    client and leaves the old one alone. A local server behind OPENAI_BASE_URL needs no key.
    Raises LLMError (auth) when neither OPENAI_API_KEY nor OPENAI_BASE_URL is set.
    """
    base_url: str | None = settings.OPENAI_BASE_URL or None
    api_key: str = settings.OPENAI_API_KEY or (_LOCAL_API_KEY if base_url else "")
    if not api_key:
        raise LLMError(Reason.AUTH, "neither OPENAI_API_KEY nor OPENAI_BASE_URL is set")
    key = (api_key, base_url, _timeout_seconds())
    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    if key not in clients:
        clients[key] = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=key[2],
            # Retries happen in this module, inside the time budget; never inside the client.
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(verify=_ssl_context()),
        )
    return clients[key]


async def close_clients() -> None:
    """Close the running loop's clients (a sync caller's loop ends with its call)."""
    for client in _clients.pop(asyncio.get_running_loop(), {}).values():
        await client.close()


# --- At most LLM_MAX_CONCURRENCY calls in flight per process -------------------------------------

_inflight = 0
_inflight_lock = threading.Lock()  # threads, not a loop: sync callers each run their own loop


@contextlib.contextmanager
def generation_slot() -> Iterator[None]:
    """Hold one of the process's LLM_MAX_CONCURRENCY slots, or fail at once ("overloaded")."""
    global _inflight
    limit = int(settings.LLM_MAX_CONCURRENCY)
    with _inflight_lock:
        if _inflight >= limit:
            raise LLMError(Reason.OVERLOADED, f"{limit} model calls already in flight")
        _inflight += 1
    MODEL_CALLS_IN_FLIGHT.inc()
    try:
        yield
    finally:
        MODEL_CALLS_IN_FLIGHT.dec()
        with _inflight_lock:
            _inflight -= 1


def inflight() -> int:
    """Model calls in flight in this process now."""
    return _inflight


# --- The request, with retries inside the budget ------------------------------------------------


def _retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds a 429 asks us to wait (retry-after-ms, retry-after seconds or HTTP date)."""
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isfinite(seconds):
            return max(0.0, seconds)
        return math.inf
    value = headers.get("retry-after")
    if value:
        parsed = email.utils.parsedate_tz(value)
        if parsed is not None:
            return max(0.0, email.utils.mktime_tz(parsed) - time.time())
    return None


def _backoff_seconds(retry: int) -> float:
    """The pause before retry number `retry` (0-based) after a failure without Retry-After."""
    return min(0.5 * 2.0**retry, MAX_BACKOFF_SECONDS)


def _status_failure(exc: openai.APIStatusError) -> tuple[LLMError, bool, float | None]:
    """(error, retryable, requested wait) for an HTTP error status."""
    code = exc.status_code
    if isinstance(exc, openai.RateLimitError) or code == 429:
        if exc.code == "insufficient_quota":  # a billing problem: waiting will not help
            return LLMError(Reason.RATE_LIMITED, "HTTP 429 (insufficient quota)"), False, None
        return (
            LLMError(Reason.RATE_LIMITED, "HTTP 429"),
            True,
            _retry_after_seconds(exc.response.headers),
        )
    if code >= 500:
        return LLMError(Reason.SERVER_ERROR, f"HTTP {code}"), True, None
    if code in (401, 403):
        return LLMError(Reason.AUTH, f"HTTP {code}"), False, None
    return LLMError(Reason.BAD_REQUEST, f"HTTP {code}"), False, None


def _classify(exc: Exception) -> tuple[LLMError, bool, float | None]:
    """(error, retryable, requested wait) for an exception raised by the client."""
    # APITimeoutError subclasses APIConnectionError: it must come first.
    if isinstance(exc, openai.APITimeoutError):
        return LLMError(Reason.TIMEOUT, "no answer in time"), True, None
    if isinstance(exc, openai.APIConnectionError):
        return LLMError(Reason.CONNECTION, "cannot reach the API"), True, None
    if isinstance(exc, openai.APIStatusError):
        return _status_failure(exc)
    if isinstance(exc, openai.APIResponseValidationError | ValueError):
        # ValueError: a 200 whose body claims to be JSON and is not.
        return LLMError(Reason.MALFORMED, "unexpected response body"), False, None
    return LLMError(Reason.SERVER_ERROR, type(exc).__name__), False, None


def request_body(
    *,
    messages: list[ChatCompletionMessageParam],
    response_format: ResponseFormatJSONSchema,
    max_tokens: int,
) -> CompletionCreateParamsNonStreaming:
    """The Chat Completions request, as plain JSON. chat.completions.create() would first walk
    every parameter against its TypedDict to rename and reformat fields, on every call (most of
    the client's CPU per question), and find nothing to change here: the messages are text, the
    schema a dict (a test holds the SDK to that: it leaves this body as it is)."""
    return {
        "model": settings.OPENAI_MODEL,
        "messages": messages,
        "response_format": response_format,
        "max_tokens": max_tokens,
    }


async def request(
    *,
    messages: list[ChatCompletionMessageParam],
    response_format: ResponseFormatJSONSchema,
    max_tokens: int,
) -> tuple[ChatCompletion, int]:
    """Send the request, retrying transport failures within the budget: (completion, attempts).

    Each attempt may take LLM_TIMEOUT_SECONDS (less if the budget is running out), measured on
    the wall clock: httpx's timeouts bound each read, so a server sending a byte at a time would
    never trip them, while `asyncio.timeout` cancels the attempt whatever the server does. At
    most LLM_MAX_RETRIES retries follow, each after a pause of at most MAX_BACKOFF_SECONDS.
    """
    timeout = _timeout_seconds()
    max_retries = _max_retries()
    deadline = time.monotonic() + _call_budget_seconds(timeout=timeout, max_retries=max_retries)
    client = get_client()
    body = request_body(messages=messages, response_format=response_format, max_tokens=max_tokens)
    attempts = 0
    while True:
        # Never more than the time left (a timeout of 0 or less would not be a timeout at all).
        attempt_timeout = max(min(timeout, deadline - time.monotonic()), 0.001)
        attempts += 1
        try:
            async with asyncio.timeout(attempt_timeout):
                # What chat.completions.create() sends, through the client's own post (the
                # SDK's documented way to send a request it does not build): the same
                # endpoint, authentication, headers, timeout and parsing into ChatCompletion.
                completion = await client.post(
                    "/chat/completions",
                    body=body,
                    cast_to=ChatCompletion,
                    options={"timeout": attempt_timeout, "security": {"bearer_auth": True}},
                )
        except (openai.OpenAIError, ValueError) as exc:
            cause: Exception = exc
            failure, retryable, requested_wait = _classify(exc)
        except TimeoutError as exc:
            cause = exc
            failure = LLMError(Reason.TIMEOUT, f"no complete answer within {attempt_timeout:g}s")
            retryable, requested_wait = True, None
        else:
            if not isinstance(completion, ChatCompletion):  # a 200 with a non-JSON body
                raise _with_attempts(LLMError(Reason.MALFORMED, "response is not JSON"), attempts)
            return completion, attempts

        failure.attempts = attempts
        retry = attempts - 1
        if not retryable or retry >= max_retries:
            raise failure from cause
        if requested_wait is not None:
            # Honour Retry-After only when it is short and fits the budget; otherwise give up now.
            if requested_wait > MAX_BACKOFF_SECONDS:
                failure.detail = f"HTTP 429, Retry-After {requested_wait:g}s is too long"
                raise failure from cause
            pause = requested_wait
        else:
            pause = _backoff_seconds(retry)
        if deadline - time.monotonic() - pause < min(_MIN_ATTEMPT_SECONDS, timeout):
            failure.detail += " (time budget exhausted)"
            raise failure from cause
        logger.debug("%s, retrying in %.2fs (attempt %d)", failure.reason, pause, attempts)
        await asyncio.sleep(pause)


def _with_attempts(error: LLMError, attempts: int) -> LLMError:
    error.attempts = attempts
    return error
