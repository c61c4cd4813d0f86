"""Everything of tracing that imports OpenTelemetry: imported by config.tracing only once tracing
is on in this process (OTEL_EXPORTER_OTLP_ENDPOINT set, `make otel` installed).

What a span may carry, and what it never does (the rule of the logs and error reports):

- SQL with its placeholders, never its parameters (psycopg's `capture_parameters` off); Redis
  commands with every argument a `?` (the instrumentation's own sanitising);
- a model call's model, token counts, finish reasons and duration, never a message: the prompt
  and the completion are not recorded (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT is
  forced to NO_CONTENT, no completion hook is loaded, and the calls' spans set no content);
- a request's URL pattern, method, status and path without its query string, never the
  client's address;
- an exception's type, and its message only where it cannot quote what a candidate wrote (the
  logs' rule, config.logging): `scrubbed` rewrites every span on its way to the exporter, so a
  database error's `DETAIL: Failing row contains (...)` never leaves.
"""

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.urls import Resolver404, get_resolver
from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.genai.handler import TelemetryHandler
from opentelemetry.util.genai.types import Error
from opentelemetry.util.http import parse_excluded_urls

from config.logging import PROJECT_PACKAGES, WITHHELD

logger = logging.getLogger("config.tracing")

SERVICE_NAME_DEFAULT = "mockroom"
# A task worker's spans: one per task, its queries and model calls inside it.
TASK_SPAN_PREFIX = "task "
# Polled every few seconds by probes and Prometheus: not worth a trace each.
EXCLUDED_URLS_DEFAULT = "/healthz,/metrics"

# A request's attributes that carry the query string, or the client's address.
_URL_ATTRIBUTES = frozenset({"http.url", "http.target", "url.full"})
_DROPPED_ATTRIBUTES = frozenset({"url.query"})
_CLIENT_ATTRIBUTES = frozenset(
    {
        "client.address",
        "client.port",
        "http.client_ip",
        "net.peer.ip",
        "net.peer.port",
        "network.peer.address",
        "network.peer.port",
    }
)
# A database error's first line names the constraint; the lines after it quote the row.
_FIRST_LINE_MODULES = ("django.db", "psycopg")


def provider_start(*, task_worker: bool) -> TracerProvider:
    """This process's tracer provider, exporting to OTEL_EXPORTER_OTLP_ENDPOINT (OTLP over
    HTTP, protobuf) in batches from a thread of its own, and the libraries instrumented."""
    resource = Resource.create(
        {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME_DEFAULT}
    )
    # A task worker's polls (a query every interval) would each be a trace of their own: there
    # only the tasks start traces, and what runs inside one belongs to it.
    provider = TracerProvider(
        resource=resource, sampler=ParentBased(root=TaskRoots()) if task_worker else None
    )
    provider.add_span_processor(BatchSpanProcessor(ScrubbingExporter(OTLPSpanExporter())))
    trace.set_tracer_provider(provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider, capture_parameters=False)
    RedisInstrumentor().instrument(tracer_provider=provider)
    # The model calls are traced where they are made (model_calls): the client's own
    # instrumentation wraps chat.completions.create(), which interviews.llm never calls.
    return provider


def asgi_traced(app: Any, provider: TracerProvider) -> Any:
    """The ASGI application inside OpenTelemetry's ASGI middleware: one server span a request,
    named by its URL pattern, in the event loop (no thread hop)."""
    excluded = (
        os.environ.get("OTEL_PYTHON_ASGI_EXCLUDED_URLS")
        or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS")
        or EXCLUDED_URLS_DEFAULT
    )
    return OpenTelemetryMiddleware(
        app,
        excluded_urls=parse_excluded_urls(excluded),
        default_span_details=span_details,
        tracer_provider=provider,
        exclude_spans=["receive", "send"],
    )


def span_details(scope: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """`POST /interviews/<uuid:session_id>/questions/`: the URL pattern, not the ids."""
    method = str(scope.get("method") or "HTTP")
    try:
        route = "/" + get_resolver().resolve(scope.get("path") or "/").route
    except Resolver404:
        return method, {}
    return f"{method} {route}", {"http.route": route}


class TaskRoots(Sampler):
    """Starts a trace for a task, for nothing else (ParentBased samples what runs inside)."""

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if name.startswith(TASK_SPAN_PREFIX):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "TaskRoots"


# --- Model calls -----------------------------------------------------------------------------


class ModelCall:
    """One model call's span (GenAI semantic conventions, OpenTelemetry's GenAI helpers): the
    model, the tokens used, the finish reasons; never a message."""

    def __init__(self, handler: TelemetryHandler, *, model: str, base_url: str | None) -> None:
        address = urlsplit(base_url or "https://api.openai.com/v1")
        self._invocation = handler.inference(
            "openai",
            request_model=model,
            server_address=address.hostname,
            server_port=address.port,
        )

    def completed(self, completion: Any) -> None:
        """The reply's model, id, finish reasons and token counts (an odd reply is no error
        here: the call's own code judges it)."""
        invocation = self._invocation
        try:
            invocation.response_model_name = getattr(completion, "model", None)
            invocation.response_id = getattr(completion, "id", None)
            choices = getattr(completion, "choices", None) or []
            invocation.finish_reasons = [str(c.finish_reason) for c in choices if c.finish_reason]
            usage = getattr(completion, "usage", None)
            if usage is not None:
                invocation.input_tokens = usage.prompt_tokens
                invocation.output_tokens = usage.completion_tokens
        except Exception:
            logger.debug("a model call's reply could not be described in its span", exc_info=True)

    def stop(self) -> None:
        self._invocation.stop()

    def fail(self, error_type: str) -> None:
        # The reason only (timeout, server_error...): a server's error body is not repeated.
        self._invocation.fail(Error(message=error_type, type=error_type))


def model_calls(provider: TracerProvider) -> Callable[..., ModelCall]:
    handler = TelemetryHandler(
        tracer_provider=provider, instrumentation_scope_name="interviews.llm"
    )

    def start(*, model: str, base_url: str | None) -> ModelCall:
        return ModelCall(handler, model=model, base_url=base_url)

    return start


# --- Task workers ----------------------------------------------------------------------------


def tasks_traced(provider: TracerProvider) -> None:
    """A span for each task the worker runs (started and ended by Django's task signals), so
    that its queries and model calls form one trace. The worker runs one task at a time."""
    from django.tasks import TaskResultStatus
    from django.tasks.signals import task_finished, task_started

    tracer = provider.get_tracer("config.tracing")
    running: list[tuple[Any, object]] = []

    def started(sender: object, task_result: Any, **kwargs: object) -> None:
        span = tracer.start_span(
            f"{TASK_SPAN_PREFIX}{task_result.task.module_path}",
            kind=SpanKind.CONSUMER,
            attributes={
                "mockroom.task.id": str(task_result.id),
                "mockroom.task.queue": str(task_result.task.queue_name),
                "mockroom.request_id": str(task_result.kwargs.get("x_request_id") or ""),
            },
        )
        running.append((span, context.attach(trace.set_span_in_context(span))))

    def finished(sender: object, task_result: Any, **kwargs: object) -> None:
        if not running:
            return
        span, token = running.pop()
        if task_result.status == TaskResultStatus.FAILED:
            errors = getattr(task_result, "errors", None) or []
            error_type = errors[-1].exception_class_path if errors else "failed"
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, error_type))
        span.end()
        context.detach(token)  # type: ignore[arg-type]

    task_started.connect(started, dispatch_uid="config.tracing.task_started", weak=False)
    task_finished.connect(finished, dispatch_uid="config.tracing.task_finished", weak=False)


# --- What leaves ----------------------------------------------------------------------------


def message_safe(exception_type: str, message: str) -> str:
    """config.logging's rule, from the type's name (all a finished span keeps)."""
    module = exception_type.rpartition(".")[0]
    if module.split(".")[0] in PROJECT_PACKAGES:
        return message
    if module.startswith(_FIRST_LINE_MODULES):
        return message.split("\n", 1)[0]
    return WITHHELD


def scrubbed(span: ReadableSpan) -> ReadableSpan:
    """The span as it may leave: see the module's docstring."""
    server = span.kind == SpanKind.SERVER
    attributes = {}
    for key, value in (span.attributes or {}).items():
        if key in _DROPPED_ATTRIBUTES or (server and key in _CLIENT_ATTRIBUTES):
            continue
        if key in _URL_ATTRIBUTES and isinstance(value, str):
            value = value.split("?", 1)[0]
        attributes[key] = value
    events = []
    status = span.status
    for event in span.events:
        if event.name != "exception":
            events.append(event)
            continue
        event_attributes = dict(event.attributes or {})
        exception_type = str(event_attributes.get("exception.type", ""))
        message = message_safe(exception_type, str(event_attributes.get("exception.message", "")))
        # The traceback's text ends with each exception's message: only the type and message.
        events.append(
            Event(
                "exception",
                {"exception.type": exception_type, "exception.message": message},
                event.timestamp,
            )
        )
        if status.status_code == StatusCode.ERROR:  # the SDK's "Type: message" with it
            status = Status(StatusCode.ERROR, f"{exception_type}: {message}")
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class ScrubbingExporter(SpanExporter):
    """The OTLP exporter, given each span as `scrubbed` makes it."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([scrubbed(span) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)
