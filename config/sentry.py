"""Error reports to Sentry, or to any server that speaks its protocol (GlitchTip, self-hosted
Sentry), when SENTRY_DSN is set: for the web server and for the task workers, which load the
same settings. Unset, nothing is imported or started.

A report never carries what a candidate wrote (an answer, a transcript, code), a prompt, a
password or a cookie: request bodies are never read, local variables never sent, PII off, and
`event_scrub` removes from every event what could still carry such text (the request's query
string, cookies and most headers; exception messages that may quote their input; breadcrumbs'
data; log records' extra fields; subprocess command lines). What stays: the exception's type,
the stack (file, line, function, our source), the URL pattern, the request id, safe messages.
"""

import logging
from typing import Any

from config.logging import REQUEST_ID, WITHHELD, exception_message_safe

FILTERED = "[Filtered]"
# Request headers kept in a report: none of them carries the candidate's text or a secret.
_HEADERS_KEPT = frozenset(
    {"accept", "content-length", "content-type", "host", "hx-request", "user-agent", "x-request-id"}
)
# Breadcrumb data kept (an HTTP call of the model's client: method, URL without query, status).
_BREADCRUMB_DATA_KEPT = frozenset({"method", "status_code", "reason", "url"})
# Span data kept in performance traces (SENTRY_TRACES_SAMPLE_RATE > 0).
_SPAN_DATA_KEPT = frozenset(
    {"db.system", "db.name", "db.operation", "http.method", "http.response.status_code", "url"}
)


def sentry_init(
    *,
    dsn: str,
    environment: str = "",
    release: str = "",
    traces_sample_rate: float = 0.0,
    transport: Any = None,
) -> bool:
    """Start error reporting when `dsn` is set; returns whether it started."""
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,
        release=release or None,
        # No personal data collected by the SDK: neither `send_default_pii` (deprecated) nor
        # `data_collection` set is the SDK's `send_default_pii=False`; event_scrub does the rest.
        include_local_variables=False,
        max_request_body_size="never",
        traces_sample_rate=traces_sample_rate,
        # Only what is listed: no integration that would record a model's prompts or replies.
        auto_enabling_integrations=False,
        integrations=[
            DjangoIntegration(transaction_style="url", middleware_spans=False),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        before_send=event_scrub,
        before_send_transaction=event_scrub,
        before_breadcrumb=breadcrumb_scrub,
        transport=transport,
    )
    return True


def event_scrub(event: Any, hint: dict[str, Any]) -> Any:
    """An error (or a trace) as it may leave this server: see the module's docstring."""
    request = event.get("request")
    if isinstance(request, dict):
        for key in ("data", "query_string", "cookies", "env"):
            request.pop(key, None)
        if isinstance(request.get("url"), str):
            request["url"] = request["url"].split("?", 1)[0]
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {k: v for k, v in headers.items() if k.lower() in _HEADERS_KEPT}
    messages = _safe_messages(hint.get("exc_info"))
    for container in (event.get("exception"), event.get("threads")):
        for value in (container or {}).get("values") or ():
            if "value" in value:
                named = (value.get("module"), value.get("type"))
                value["value"] = messages.get(named, WITHHELD)
            for frame in (value.get("stacktrace") or {}).get("frames") or ():
                frame.pop("vars", None)
    crumbs = event.get("breadcrumbs")
    if isinstance(crumbs, dict):
        scrubbed = (breadcrumb_scrub(crumb, {}) for crumb in crumbs.get("values") or ())
        crumbs["values"] = [crumb for crumb in scrubbed if crumb is not None]
    for span in event.get("spans") or ():
        if span.get("op", "").startswith("subprocess"):
            span["description"] = "subprocess"
        data = span.get("data")
        if isinstance(data, dict):
            span["data"] = {k: v for k, v in data.items() if k in _SPAN_DATA_KEPT}
    extra = event.get("extra")
    if isinstance(extra, dict):  # a log record's extra fields (Django's request object...)
        event["extra"] = {k: v for k, v in extra.items() if k == "sys.argv"}
    event.pop("user", None)
    if (request_id := REQUEST_ID.get()) is not None:
        event.setdefault("tags", {})["request_id"] = request_id
    return event


def breadcrumb_scrub(crumb: Any, hint: dict[str, Any]) -> Any:
    """What a breadcrumb keeps: its message (a log line, which never quotes the candidate; an
    SQL statement with its placeholders) and an HTTP call's method, URL and status. A
    subprocess's command line (the code sandbox) is dropped, with its breadcrumb."""
    if crumb.get("category") == "subprocess":
        return None
    data = crumb.get("data")
    if isinstance(data, dict):
        crumb["data"] = {k: v for k, v in data.items() if k in _BREADCRUMB_DATA_KEPT}
        if isinstance(crumb["data"].get("url"), str):
            crumb["data"]["url"] = crumb["data"]["url"].split("?", 1)[0]
    return crumb


def _safe_messages(exc_info: Any) -> dict[tuple[str | None, str], str]:
    """(module, type name) -> the safe message, for the exception and its causes and contexts:
    how Sentry names each exception of the chain in an event."""
    messages: dict[tuple[str | None, str], str] = {}
    exc = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) == 3 else None
    seen: set[int] = set()
    while isinstance(exc, BaseException) and id(exc) not in seen:
        seen.add(id(exc))
        cls = type(exc)
        module = None if cls.__module__ == "builtins" else cls.__module__
        messages.setdefault((module, cls.__qualname__), exception_message_safe(exc))
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return messages
