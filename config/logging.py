"""Logging helpers referenced from settings.LOGGING and from gunicorn's configuration.

Django-independent on purpose: gunicorn imports `gunicorn_logconfig_dict` before any Django
setting is loaded. What a line may carry: Mockroom's own messages (never an answer, a transcript,
code, a prompt or a password), the request id, and a traceback whose exception messages are kept
only where they cannot quote the candidate (`exception_message_safe`).
"""

import logging
import os
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonFormatter as BaseJsonFormatter

# The X-Request-ID of the request (or background task) being handled: config.requestid sets it.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

LOG_FORMATS = ("text", "json")

# Exception messages written by Mockroom itself never quote the candidate's text: kept.
PROJECT_PACKAGES = frozenset({"accounts", "config", "interviews", "ledger", "payments"})
# Messages that name a place, a host or a missing attribute, never a value: kept.
_MESSAGE_SAFE: tuple[type[BaseException], ...] = (
    AttributeError,
    ImportError,
    IndexError,
    MemoryError,
    NameError,
    NotImplementedError,
    OSError,  # ConnectionError, TimeoutError, FileNotFoundError...
    RecursionError,
    TypeError,
)
_MESSAGE_SAFE_MODULES = ("redis.", "django.core.exceptions", "django.http")
# A database error's first line names the constraint or the problem; the lines after it
# (DETAIL: Failing row contains (...), Key (...)=(...)) quote the row: dropped.
_FIRST_LINE_MODULES = ("django.db", "psycopg")
WITHHELD = "[message withheld: it may quote what the candidate wrote]"


def exception_message_safe(exc: BaseException) -> str:
    """`str(exc)`, or what of it may be logged or sent: a message that could quote an answer, a
    transcript, code or a prompt (a ValueError quoting its input, a validation error, a database
    row) is withheld; its type and traceback still say what failed and where."""
    cls = type(exc)
    module = cls.__module__ or ""
    if module.split(".")[0] in PROJECT_PACKAGES:
        return str(exc)
    if module.startswith(_FIRST_LINE_MODULES):
        return str(exc).split("\n", 1)[0]
    if cls.__name__ == "ValidationError" or not (
        isinstance(exc, _MESSAGE_SAFE) or module.startswith(_MESSAGE_SAFE_MODULES)
    ):
        return WITHHELD
    return str(exc)


def exception_text(exc: BaseException) -> str:
    """The traceback Python would print for `exc` (its causes and contexts included), each
    exception's message made safe by exception_message_safe."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        cause = current.__cause__
        current = (
            cause if cause is not None or current.__suppress_context__ else current.__context__
        )
    parts: list[str] = []
    for position, error in enumerate(reversed(chain)):
        if position:
            parts.append(
                "\nThe above exception was the direct cause of the following exception:\n\n"
                if error.__cause__ is not None
                else "\nDuring handling of the above exception, another exception occurred:\n\n"
            )
        if error.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_tb(error.__traceback__))
        cls = type(error)
        name = (
            cls.__qualname__
            if cls.__module__ == "builtins"
            else f"{cls.__module__}.{cls.__qualname__}"
        )
        message = exception_message_safe(error)
        parts.append(f"{name}: {message}\n" if message else f"{name}\n")
    return "".join(parts).rstrip("\n")


class TextFormatter(logging.Formatter):
    """The development format, `[request id]` included, tracebacks made safe."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt, defaults={"request_id": "-"})

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info:  # never the text another handler cached (Sentry's formats first)
            record.exc_text = self.formatException(record.exc_info)
        return super().format(record)

    def formatException(self, ei: Any) -> str:
        return exception_text(ei[1]) if ei and ei[1] is not None else super().formatException(ei)


class JsonFormatter(BaseJsonFormatter):
    """One JSON object a line: timestamp, level, logger, message, request_id, process, the
    response's status_code where Django gives it, and exc_info (the safe traceback, one string).
    Nothing else a record carries is written (Django's request object, uvicorn's ANSI copy of
    the message...)."""

    def formatException(self, ei: Any) -> str:
        if ei and ei[1] is not None:
            return exception_text(ei[1])
        return str(super().formatException(ei))

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["timestamp"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat(
            timespec="milliseconds"
        )
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        log_data["request_id"] = getattr(record, "request_id", None)
        log_data["process"] = record.process
        status_code = record.__dict__.get("status_code")
        if isinstance(status_code, int):
            log_data["status_code"] = status_code
        log_data.update(message_dict)  # exc_info, stack_info


class RequestIdFilter(logging.Filter):
    """Adds the current request id (REQUEST_ID) to each record a handler writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        if request_id is not None:
            record.request_id = request_id
        return True


class OneLine(logging.Filter):
    """Drop the traceback: for expected noise such as a request with a bad Host header, the
    message says everything; a traceback per probe would bury the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


def log_format(value: str | None) -> str:
    """LOG_FORMAT, checked: "text" (the default) or "json"."""
    value = (value or "text").strip().lower()
    if value not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT={value!r}: use text or json.")
    return value


def gunicorn_logconfig_dict() -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: with LOG_FORMAT=json its own lines, its access log and
    uvicorn's lines (the uvicorn worker writes through gunicorn's handlers) are JSON objects
    like Django's, the request id included; with text, {}: gunicorn's own format, unchanged.

    LOG_FORMAT comes from the environment or from .env, as the settings read it."""
    import environ  # django-environ, as in the settings; it needs no Django setting

    environ.Env.read_env(Path(__file__).resolve().parent.parent / ".env", overwrite=False)
    if log_format(os.environ.get("LOG_FORMAT")) != "json":
        return {}

    def stream(to: str) -> dict[str, Any]:
        return {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
            "stream": f"ext://sys.{to}",
        }

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "config.logging.RequestIdFilter"}},
        "formatters": {"json": {"()": "config.logging.JsonFormatter"}},
        "handlers": {"error": stream("stderr"), "access": stream("stdout")},
        "root": {"level": "INFO", "handlers": ["error"]},
        "loggers": {
            # No level here: gunicorn's --log-level applies.
            "gunicorn.error": {"handlers": ["error"], "propagate": False},
            "gunicorn.access": {"handlers": ["access"], "propagate": False},
        },
    }
