"""Prometheus metrics: every metric Mockroom exports, defined once, named `mockroom_*` with their
unit in the name. Each event is counted at the one place it happens (the purchase's capture, the
model's client, the limits, the sandbox, the task that transcribes); what the database knows
(pending holds, queue depths, today's model calls) is read when /metrics is scraped instead
(config.exposition). README, "Metrics", lists them.

Every process counts: with PROMETHEUS_MULTIPROC_DIR set before this module is imported (the
production server's configuration, deploy/gunicorn.conf.py, sets it before its workers start),
prometheus_client keeps each process's values in a file of that directory, and a scrape served
by any worker adds up the files of all of them, dead ones included. Without it (`make run`, the
tests) the values live in this process's memory.

Labels take values from short fixed lists (a route is the URL pattern's name, never the path).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from enum import StrEnum, unique
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware
from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# prometheus_client writes a file per process there as soon as a metric exists: the directory
# must exist before (a task worker or a manage.py command may start before the server does).
if _directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(_directory, exist_ok=True)

# The *_created series double every counter for no use here (and are not exported in
# multiprocess mode anyway).
disable_created_metrics()


@unique
class Refusal(StrEnum):
    """Why a request was refused (nothing charged): the `reason` label of mockroom_refusals."""

    TOKENS = "tokens"  # 402: not enough tokens
    IN_PROGRESS = "in_progress"  # 409: the same request id is still being prepared
    CONFLICT = "conflict"  # 422: the request id was used for another request
    CLOSED = "closed"  # 409: the session has ended, or no follow-up can be asked
    RATE = "rate"  # 429: a rate limit (ours or django-allauth's)
    IN_FLIGHT = "in_flight"  # 429: the candidate's model calls (or transcription) in flight
    FEEDBACK_LIMIT = "feedback_limit"  # 429: feedback asked too often on one question
    MODEL = "model"  # 503: the model failed (or feedback is unavailable)
    OVERLOADED = "overloaded"  # 503: this process's LLM_MAX_CONCURRENCY calls are in flight
    BUDGET = "budget"  # 503: today's model budget (LLM_DAILY_CALL_BUDGET) is spent
    DATABASE = "database"  # 503: the database refused, timed out or was out of connections


HTTP_REQUESTS = Counter(
    "mockroom_http_requests",
    "HTTP requests answered, by route (the URL pattern's name), method and status.",
    ["route", "method", "status"],
)
QUESTIONS_SERVED = Counter(
    "mockroom_questions_served",
    "Questions delivered and charged 1 token, by kind (question, follow_up) and source.",
    ["kind", "source"],
)
FEEDBACK = Counter(
    "mockroom_feedback",
    "Answers stored with their feedback, by the feedback's source (openai, rubric, unavailable).",
    ["source"],
)
REFUSALS = Counter(
    "mockroom_refusals",
    "Requests refused with nothing charged, by reason (402, 409, 422, 429, 503).",
    ["reason"],
)
MODEL_CALLS = Counter(
    "mockroom_model_calls",
    "Model calls, by purpose and outcome (ok, or why it failed: timeout, overloaded, ...).",
    ["purpose", "outcome"],
)
MODEL_CALL_SECONDS = Histogram(
    "mockroom_model_call_duration_seconds",
    "Time a model call took, retries included, by purpose (calls refused at once excluded).",
    ["purpose"],
    buckets=(0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120),
)
MODEL_TOKENS = Counter(
    "mockroom_model_tokens",
    "Tokens the model reported using, by purpose and type (prompt, completion).",
    ["purpose", "type"],
)
MODEL_CALLS_IN_FLIGHT = Gauge(
    "mockroom_model_calls_in_flight",
    "Model calls waiting on the model now (a dead worker's are dropped).",
    multiprocess_mode="livesum",
)
PREPARED_QUESTIONS = Counter(
    "mockroom_prepared_questions",
    "Questions prepared in the background, by outcome (prepared, not_prepared, bought, discarded).",
    ["outcome"],
)
SANDBOX_RUNS = Counter(
    "mockroom_sandbox_runs",
    "Runs of code in the sandbox, by language and verdict.",
    ["language", "verdict"],
)
TRANSCRIPTIONS = Counter(
    "mockroom_transcriptions",
    "Spoken answers transcribed, by engine and outcome (done, failed).",
    ["engine", "outcome"],
)
LEDGER_VERIFY_PROBLEM_ACCOUNTS = Gauge(
    "mockroom_ledger_verify_problem_accounts",
    "Accounts that did not reconcile at the last ledger check (0: all did).",
    multiprocess_mode="mostrecent",
)
LEDGER_VERIFY_LAST_SUCCESS = Gauge(
    "mockroom_ledger_verify_last_success_timestamp_seconds",
    "When the ledger check last found every account reconciled (Unix time).",
    multiprocess_mode="max",
)

# The series an alert reads exist from the start, at 0 (a rate over a series that appears at 1
# misses its first event).
for _reason in Refusal:
    REFUSALS.labels(_reason)
for _kind in ("question", "follow_up"):
    QUESTIONS_SERVED.labels(_kind, "bank")
# What interviews.llm calls the model for (its `purpose`, spaces and hyphens made underscores).
MODEL_CALL_PURPOSES = (
    "question",
    "follow_up",
    "feedback",
    "coding_problem",
    "code_review",
    "report",
    "transcription",
)
for _purpose in MODEL_CALL_PURPOSES:
    MODEL_CALLS.labels(_purpose, "ok")
    MODEL_CALL_SECONDS.labels(_purpose)


def refusal_count(reason: Refusal) -> None:
    REFUSALS.labels(reason).inc()


def model_call_count(
    *, purpose: str, outcome: str, seconds: float | None = None, usage: Any = None
) -> None:
    """One model call: its outcome, its time (None: refused before anything was sent) and the
    tokens its reply reported (`usage`: the completion's, if any)."""
    purpose = purpose.replace(" ", "_").replace("-", "_")
    MODEL_CALLS.labels(purpose, outcome).inc()
    if seconds is not None:
        MODEL_CALL_SECONDS.labels(purpose).observe(seconds)
    for kind in ("prompt", "completion"):
        tokens = getattr(usage, f"{kind}_tokens", None)
        if isinstance(tokens, int) and tokens > 0:
            MODEL_TOKENS.labels(purpose, kind).inc(tokens)


def ledger_verify_count(*, problems: int) -> None:
    """A ledger check ran (the daily task, or `manage.py ledger_verify`): how many accounts did
    not reconcile, and when it last found none."""
    LEDGER_VERIFY_PROBLEM_ACCOUNTS.set(problems)
    if problems == 0:
        LEDGER_VERIFY_LAST_SUCCESS.set_to_current_time()


# --- Requests ----------------------------------------------------------------------------------

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_request_counters: dict[tuple[str, str, int], Any] = {}


def _route(request: HttpRequest) -> str:
    """The URL pattern's name ("interviews:question_next"; an unnamed one's view path), "static"
    for ServeStatic's files, "unmatched" for a path no pattern matched (a 404, a redirect
    answered before the URL was resolved)."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return str(match.view_name)
    if request.path_info.startswith(_static_prefix()):
        return "static"
    return "unmatched"


@functools.cache
def _static_prefix() -> str:
    return "/" + settings.STATIC_URL.lstrip("/")


def request_count(request: HttpRequest, response: HttpResponseBase) -> None:
    method = request.method if request.method in METHODS else "other"
    key = (_route(request), str(method), response.status_code)
    counter = _request_counters.get(key)
    if counter is None:  # the label lookup once per route, method and status
        counter = _request_counters[key] = HTTP_REQUESTS.labels(*key)
    counter.inc()


@sync_and_async_middleware
def requests_counted_middleware(get_response: Callable) -> Callable:
    """Count every response (mockroom_http_requests). First in MIDDLEWARE, so it sees what any
    other middleware answered; no I/O, so it runs in the event loop under ASGI (a few
    microseconds: a dictionary lookup and one increment)."""

    if iscoroutinefunction(get_response):

        async def amiddleware(request: HttpRequest) -> HttpResponseBase:
            response = await get_response(request)
            request_count(request, response)
            return response

        return amiddleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        response = get_response(request)
        request_count(request, response)
        return response

    return middleware
