"""Tracing with OpenTelemetry, optional (README, "Tracing (optional)"): only when
OTEL_EXPORTER_OTLP_ENDPOINT is set, and only with `make otel` installed. Unset, this module
imports nothing from OpenTelemetry and each of its functions is a check of one variable.

Started after the server forks, in each process that handles work (the exporter's thread and
the instrumented connections belong to the process):

- the web server's workers: `deploy/gunicorn.conf.py`'s post_fork calls `tracing_init()` before
  the worker imports the application, and config.asgi wraps the application in OpenTelemetry's
  ASGI middleware (`asgi_traced`): a span per request, named by its URL pattern;
- the task workers (`manage.py db_worker`): config.apps calls it as the app registry is ready,
  and each task is a span of its own (`make run`, the tests and every other command: never).

Inside: the database's queries (psycopg), Redis commands, and the model calls (GenAI semantic
conventions: model, tokens, finish reasons, duration), with message content off: a prompt, an
answer or a completion never leaves (config.otel says what a span may carry). The standard
OTEL_* variables apply (OTEL_SERVICE_NAME, default "mockroom"; OTEL_EXPORTER_OTLP_HEADERS;
OTEL_TRACES_SAMPLER; OTEL_BSP_SCHEDULE_DELAY...).
"""

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any, Protocol

logger = logging.getLogger("config.tracing")

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
# The commands whose process traces its work (the web server's workers call tracing_init()
# themselves, from gunicorn's post_fork).
TRACED_COMMANDS = frozenset({"db_worker"})

# Set in a process where tracing started: the tracer provider, and what starts a model call's span.
_provider: Any = None
_model_call_start: Any = None


def tracing_enabled() -> bool:
    return bool(os.environ.get(ENDPOINT_VARIABLE))


def tracing_init(*, task_worker: bool = False) -> bool:
    """Start tracing in this process when OTEL_EXPORTER_OTLP_ENDPOINT is set; returns whether
    it started. Once per process; call it after the process forked."""
    global _provider, _model_call_start
    if _provider is not None:
        return True
    if not tracing_enabled():
        return False
    # Prompts and completions never leave, whatever the environment says (NO_CONTENT: the GenAI
    # helpers' word for false; the openai instrumentation reads anything but "true" as false).
    os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "NO_CONTENT"
    os.environ.pop("OTEL_INSTRUMENTATION_GENAI_COMPLETION_HOOK", None)
    try:
        from config import otel
    except ImportError as exc:
        logger.warning(
            "%s is set but OpenTelemetry is not installed (no %s): run `make otel`. "
            "Tracing is off.",
            ENDPOINT_VARIABLE,
            exc.name,
        )
        return False
    _provider = otel.provider_start(task_worker=task_worker)
    _model_call_start = otel.model_calls(_provider)
    if task_worker:
        otel.tasks_traced(_provider)
    return True


def tracing_init_for_command(argv: list[str] | None = None) -> bool:
    """In a task worker (`manage.py db_worker`), start tracing; in any other command, nothing."""
    argv = sys.argv if argv is None else argv
    if len(argv) < 2 or argv[1] not in TRACED_COMMANDS:
        return False
    return tracing_init(task_worker=True)


def asgi_traced(app: Any) -> Any:
    """The ASGI application, inside OpenTelemetry's ASGI middleware when tracing started in this
    process (a server worker, after post_fork); the application itself otherwise."""
    if _provider is None:
        return app
    from config import otel

    return otel.asgi_traced(app, _provider)


class ModelCallTrace(Protocol):
    def completed(self, completion: Any) -> None: ...


class _Untraced:
    """A model call while tracing is off: nothing to record."""

    def completed(self, completion: Any) -> None:
        pass


_UNTRACED = _Untraced()


@contextlib.contextmanager
def model_call_traced(*, model: str, base_url: str | None) -> Iterator[ModelCallTrace]:
    """A model call's span (the whole call, retries included), when tracing is on. Call
    `.completed(completion)` with the reply; an exception leaving the block marks the span
    failed with the LLMError's reason (or the exception's type), never its message."""
    if _model_call_start is None:
        yield _UNTRACED
        return
    call = _model_call_start(model=model, base_url=base_url)
    try:
        yield call
    except BaseException as exc:
        call.fail(str(getattr(exc, "reason", "") or type(exc).__name__))
        raise
    call.stop()
