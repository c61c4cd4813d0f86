"""Tracing with OpenTelemetry (config.tracing): nothing imported without
OTEL_EXPORTER_OTLP_ENDPOINT; with it, `make serve`'s server and the task worker send their spans
(requests, queries, model calls, tasks) to an OTLP/HTTP receiver, here a fake one on loopback,
and no span carries a prompt, a completion, an answer or a query string."""

import gzip
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client
from django_tasks_db.models import DBTaskResult

from config import tracing
from config.testing import redis_url
from config.tests.test_scheduler import ROOT, manage, process_env
from interviews.models import Topic
from interviews.services import session_start
from interviews.tests.fake_openai import ok, question_payload
from interviews.tests.test_serving import (
    ProductionServer,
    logged_in_cookies,
    next_url,
    wait_for,
)

try:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    OTEL_INSTALLED = True
except ImportError:  # `make otel` not installed (`make test` installs it)
    OTEL_INSTALLED = False

needs_otel = pytest.mark.skipif(
    not OTEL_INSTALLED,
    reason="OpenTelemetry is not installed: `make otel` (or `make devvenv`) installs it",
)

HTMX = {"HTTP_HX_REQUEST": "true"}
# What the model is asked, and what it answers, must never be in a span.
QUESTION = "Which trade-offs does a traced write-ahead log make, question {n}?"


# --- Without the endpoint ---------------------------------------------------------------------


def test_without_the_endpoint_nothing_of_opentelemetry_is_imported(tmp_path):
    """The server's hook, the task worker's start, the application, a model call: none imports
    OpenTelemetry while OTEL_EXPORTER_OTLP_ENDPOINT is unset (or empty, as in a .env file).

    (redis-py itself probes for OpenTelemetry's metrics SDK when it is imported, for metrics of
    its own that Mockroom never turns on: what it loads is the baseline, and nothing is added.)"""
    script = """
import os, runpy, sys
os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = ""
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import redis
def otel():
    return {name for name in sys.modules if name.startswith("opentelemetry")}
baseline = otel()
conf = runpy.run_path("deploy/gunicorn.conf.py")
conf["post_fork"](None, None)
import django
django.setup()
from config import tracing
assert not tracing.tracing_init()
assert not tracing.tracing_init_for_command(["manage.py", "db_worker"])
app = object()
assert tracing.asgi_traced(app) is app
import interviews.llm
with tracing.model_call_traced(model="gpt-test", base_url=None) as call:
    call.completed(None)
added = sorted(otel() - baseline)
ours = [name for name in otel() if name.startswith((
    "opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.instrumentation",
    "opentelemetry.util.genai",
))]
print(added, ours, "config.otel" in sys.modules)
sys.exit(1 if added or ours or "config.otel" in sys.modules else 0)
"""
    env = {
        **process_env(),
        "OTEL_EXPORTER_OTLP_ENDPOINT": "",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_with_the_endpoint_and_without_the_packages_one_line_says_make_otel(monkeypatch, caplog):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # `import opentelemetry` fails
    monkeypatch.delitem(sys.modules, "config.otel", raising=False)
    monkeypatch.setattr(tracing, "_provider", None)

    assert not tracing.tracing_init()

    warnings = [r.getMessage() for r in caplog.records if r.name == "config.tracing"]
    assert len(warnings) == 1, warnings
    assert "make otel" in warnings[0]
    assert tracing._provider is None
    # Forced off whatever the environment said, before anything could read it.
    assert os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] == "NO_CONTENT"


def test_no_command_but_the_task_worker_traces(monkeypatch):
    """`make run`, migrations, the shell, the scheduler, the tests: never, even with the
    endpoint set (the web server's workers start it from gunicorn's post_fork)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setattr(tracing, "_provider", None)
    commands = ("runserver", "migrate", "shell", "run_scheduler", "ledger_verify")
    for argv in [["pytest"], [], *(["manage.py", command] for command in commands)]:
        assert not tracing.tracing_init_for_command(argv)
    assert tracing._provider is None


# --- A fake OTLP/HTTP receiver ----------------------------------------------------------------


@dataclass
class Span:
    name: str
    kind: int
    scope: str
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    attributes: dict[str, Any]
    status: str
    events: list[dict[str, Any]] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def _attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


class Receiver:
    """What an OpenTelemetry collector's OTLP/HTTP receiver does with traces: POST /v1/traces,
    a protobuf ExportTraceServiceRequest. Keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                receiver._received(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _received(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        Span(
                            name=span.name,
                            kind=span.kind,
                            scope=scope_spans.scope.name,
                            trace_id=span.trace_id,
                            span_id=span.span_id,
                            parent_span_id=span.parent_span_id,
                            attributes=_attributes(span.attributes),
                            status=span.status.message,
                            events=[
                                {"name": e.name, **_attributes(e.attributes)} for e in span.events
                            ],
                            resource=resource,
                        )
                    )
        with self._lock:
            self.bodies.append(body)
            self.spans.extend(spans)

    def received(self) -> list[Span]:
        with self._lock:
            return list(self.spans)

    def text(self) -> str:
        """Everything sent, as text: what must never be found in it is searched here."""
        with self._lock:
            return "\n".join(body.decode("utf-8", "replace") for body in self.bodies)

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def traced_env(receiver: Receiver, fake_openai: Any) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "mockroom-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        # Asked for, and overridden: no message content leaves.
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT",
        "QUESTION_SOURCE": "openai",
        "OPENAI_BASE_URL": fake_openai.base_url,
        "OPENAI_API_KEY": "test-key",
        "OPENAI_MODEL": "gpt-test",
        "LLM_MAX_RETRIES": "0",
    }


def prompts(fake_openai: Any) -> list[str]:
    return [
        str(message["content"])
        for body in fake_openai.received_bodies
        for message in body.get("messages", [])
    ]


def assert_nothing_written_leaves(receiver: Receiver, secrets: list[str]) -> None:
    sent = receiver.text()
    for secret in secrets:
        # The whole text, and any long piece of it (a prompt embeds the topic and the rules).
        pieces = [secret] + [secret[i : i + 40] for i in range(0, max(len(secret) - 40, 1), 40)]
        for piece in pieces:
            assert piece not in sent, f"sent to the collector: {piece!r}"
    for span in receiver.received():
        assert not any(key.startswith("gen_ai.input") for key in span.attributes), span
        assert not any(key.startswith("gen_ai.output.messages") for key in span.attributes), span


# --- The web server --------------------------------------------------------------------------


@needs_otel
@pytest.mark.django_db(transaction=True)
def test_the_server_sends_a_request_with_its_queries_commands_and_model_call(
    make_user, receiver, fake_openai, tmp_path
):
    user = make_user(tokens=3)
    session = session_start(user=user, topic=Topic.objects.get(slug="python"))
    cookies = logged_in_cookies(user)
    fake_openai.enqueue(*(ok(question_payload(text=QUESTION.format(n=n))) for n in range(3)))
    env = {
        **traced_env(receiver, fake_openai),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "PREFETCH": "false",
    }
    with redis_url() as redis, ProductionServer(workers=1, **env, REDIS_URL=redis) as server:
        status, body = server.request(
            next_url(session), cookies=cookies, data={"request_id": uuid.uuid4().hex}
        )
        assert status == 200, body
        assert QUESTION.format(n=0) in body
        # A query string stays out of the traces; the probes are not traced at all.
        server.request("/?utm_source=trace-query-marker", cookies=cookies)
        server.request("/healthz", cookies={})

        def question_request() -> Span | None:
            for span in receiver.received():
                if span.name.startswith("POST /interviews/") and span.kind == 2:  # SERVER
                    return span
            return None

        wait_for(lambda: question_request() is not None, seconds=30, what="the request's span")
        request = question_request()
        assert request is not None
        wait_for(
            lambda: any(s.name == "GET /" for s in receiver.received()),
            seconds=30,
            what="the home page's span",
        )
        spans = receiver.received()

    assert request.resource["service.name"] == "mockroom-test"
    assert request.attributes["http.route"] == request.name.removeprefix("POST ")
    assert "<uuid:session_id>" in request.name  # the URL pattern, not the path with its ids
    same_trace = [s for s in spans if s.trace_id == request.trace_id]
    queries = [s for s in same_trace if s.attributes.get("db.system") == "postgresql"]
    assert queries, [s.name for s in same_trace]
    # The session read and the limits' counters, from Redis: the command, never its arguments.
    commands = [s for s in same_trace if s.attributes.get("db.system") == "redis"]
    assert commands, [s.name for s in same_trace]
    for command in commands:  # a pipeline's are one a line
        for line in str(command.attributes["db.statement"]).splitlines():
            assert set(line.split()[1:]) <= {"?"}, command.attributes
    [model_call] = [s for s in same_trace if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert model_call.name == "chat gpt-test"
    assert model_call.kind == 3  # CLIENT
    assert model_call.attributes["gen_ai.provider.name"] == "openai"
    assert model_call.attributes["gen_ai.request.model"] == "gpt-test"
    assert model_call.attributes["gen_ai.usage.input_tokens"] > 0
    assert model_call.attributes["server.address"] == "127.0.0.1"

    assert not any("healthz" in s.name for s in spans)
    for span in spans:
        for key in ("http.url", "http.target", "url.full"):
            assert "?" not in str(span.attributes.get(key, "")), span
        if span.kind == 2:
            assert "client.address" not in span.attributes
            assert "net.peer.ip" not in span.attributes
    assert "trace-query-marker" not in receiver.text()
    assert_nothing_written_leaves(receiver, [QUESTION.format(n=0), *prompts(fake_openai)])


# --- The task worker -------------------------------------------------------------------------


@needs_otel
@pytest.mark.django_db(transaction=True)
def test_the_task_worker_sends_each_task_with_its_queries_and_model_call(
    make_user, receiver, fake_openai, settings
):
    """A question delivered enqueues the next one's preparation; the real worker process traces
    the task: one trace, its queries and its model call inside; the worker's polls are not
    traced."""
    settings.PREFETCH = True
    fake_openai.enqueue(*(ok(question_payload(text=QUESTION.format(n=n))) for n in range(4)))
    session = session_start(
        user=make_user(tokens=3), topic=Topic.objects.get(slug="python"), difficulty="easy"
    )
    client = Client()
    client.force_login(session.user)
    response = client.post(next_url(session), {"request_id": uuid.uuid4().hex}, **HTMX)
    assert response.status_code == 200
    task = DBTaskResult.objects.get(task_path="interviews.tasks.question_prepare")

    env = {**process_env(), **traced_env(receiver, fake_openai)}
    worker = subprocess.run(
        manage("db_worker", "--batch", "--no-startup-delay", "--no-reload", "--queue-name", "*"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr
    task.refresh_from_db()
    assert task.status == "SUCCESSFUL", task.traceback

    deadline = time.monotonic() + 10  # the worker flushes its spans as it exits
    while not receiver.received() and time.monotonic() < deadline:
        time.sleep(0.1)
    spans = receiver.received()
    [task_span] = [s for s in spans if s.name == "task interviews.tasks.question_prepare"]
    assert task_span.attributes["mockroom.task.id"] == str(task.id)
    assert task_span.attributes["mockroom.task.queue"] == "prefetch"
    assert task_span.attributes["mockroom.request_id"]
    inside = [s for s in spans if s.trace_id == task_span.trace_id and s is not task_span]
    assert any(s.attributes.get("db.system") == "postgresql" for s in inside), spans
    assert any(s.attributes.get("gen_ai.operation.name") == "chat" for s in inside), spans
    # Every span belongs to a task's trace: the polls between tasks start none.
    assert {s.trace_id for s in spans} == {task_span.trace_id}, [s.name for s in spans]
    assert_nothing_written_leaves(
        receiver, [QUESTION.format(n=n) for n in range(4)] + prompts(fake_openai)
    )


# --- What leaves ------------------------------------------------------------------------------


@needs_otel
def test_an_exception_in_a_span_leaves_with_its_type_never_a_quoted_row():
    """A database error's DETAIL quotes the row (an answer): only its first line leaves; any
    other message that may quote its input is withheld; no traceback leaves."""
    import psycopg
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from config.otel import ScrubbingExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingExporter(memory)))
    tracer = provider.get_tracer("test")
    answer = "my secret answer about write-ahead logs"
    with pytest.raises(psycopg.errors.NotNullViolation), tracer.start_as_current_span("INSERT"):
        raise psycopg.errors.NotNullViolation(
            f'null value in column "score" violates a constraint\n'
            f"DETAIL: Failing row contains (1, {answer})."
        )
    with pytest.raises(ValueError, match="secret"), tracer.start_as_current_span("parse"):
        raise ValueError(f"invalid literal: {answer}")

    exported = memory.get_finished_spans()
    text = json.dumps([json.loads(span.to_json()) for span in exported])
    assert answer not in text
    database, other = exported
    [event] = database.events
    assert event.attributes["exception.type"] == "psycopg.errors.NotNullViolation"
    assert event.attributes["exception.message"].startswith('null value in column "score"')
    assert "exception.stacktrace" not in event.attributes
    assert database.status.description.startswith("psycopg.errors.NotNullViolation: null value")
    assert "withheld" in other.events[0].attributes["exception.message"]
    provider.shutdown()
