"""Logs: one JSON object a line with LOG_FORMAT=json; the request id taken from X-Request-ID (or
made), echoed, on every line of the request and of the background task it enqueued (a real
worker process); and no line ever carries an answer, a transcript, code or a prompt."""

import io
import json
import logging
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.urls import reverse
from django.utils.module_loading import import_string
from django_tasks_db.models import DBTaskResult

from config.logging import (
    REQUEST_ID,
    WITHHELD,
    JsonFormatter,
    RequestIdFilter,
    exception_text,
    gunicorn_logconfig_dict,
)
from config.requestid import TASK_KWARG, request_id_from
from config.tests.test_scheduler import ROOT, manage, process_env
from interviews.execution import executor_reset
from interviews.models import Answer, InterviewSession, Recording, ServedQuestion, Topic
from interviews.services import recording_transcribe, session_start
from interviews.speech.engines import engine_reset
from interviews.tests.fake_openai import feedback_payload, ok, question_payload, status, transcript
from interviews.tests.test_speech_flow import ANSWER as SPOKEN_WAV
from interviews.tests.test_speech_flow import upload

HTMX = {"HTTP_HX_REQUEST": "true"}
REQUEST_ID_SENT = "req-7f3a9c2e-logs-test"


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """What production writes with LOG_FORMAT=json, every record at DEBUG included: each line
    parsed (a line that is not one JSON object fails the test)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    token = REQUEST_ID.set(None)  # not the id of a request an earlier test made in this thread
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)
    REQUEST_ID.reset(token)


@pytest.fixture
def session(make_user) -> InterviewSession:
    topic = Topic.objects.get(slug="reactjs")
    return session_start(user=make_user(tokens=3), topic=topic, difficulty="easy")


def next_url(session: InterviewSession) -> str:
    return reverse("interviews:question_next", kwargs={"session_id": session.pk})


def answer_url(served: ServedQuestion) -> str:
    return reverse(
        "interviews:answer", kwargs={"session_id": served.session_id, "position": served.position}
    )


def test_a_json_line_is_one_object_with_a_safe_one_line_traceback(log_lines):
    logger = logging.getLogger("mockroom.test")
    token = REQUEST_ID.set("abc123")
    answer = "my answer: a " + "B-tree keeps keys sorted"  # not in the traceback's source line
    try:
        raise ValueError(answer)
    except ValueError:
        logger.exception("grading failed")
    finally:
        REQUEST_ID.reset(token)
    logger.info("after the request")
    failed, after = log_lines()
    assert failed["level"] == "ERROR"
    assert failed["logger"] == "mockroom.test"
    assert failed["message"] == "grading failed"
    assert failed["request_id"] == "abc123"
    assert failed["timestamp"].endswith("+00:00")
    assert "Traceback (most recent call last)" in failed["exc_info"]
    assert f"ValueError: {WITHHELD}" in failed["exc_info"]
    assert "B-tree" not in json.dumps(failed)
    assert after["request_id"] is None


def test_exception_messages_are_kept_only_where_they_cannot_quote_the_candidate():
    def text(exc: BaseException) -> str:
        try:
            raise exc
        except BaseException as raised:
            return exception_text(raised)

    assert text(ConnectionRefusedError("[Errno 111] Connection refused")).endswith(
        "ConnectionRefusedError: [Errno 111] Connection refused"
    )
    assert text(KeyError("the candidate's words")).endswith(f"KeyError: {WITHHELD}")
    from django.db import IntegrityError

    row = 'new row violates check constraint "x"\nDETAIL:  Failing row contains (my answer).'
    assert text(IntegrityError(row)).endswith('violates check constraint "x"')
    from interviews.llm.errors import LLMError

    assert text(LLMError("timeout", "no answer in time")).endswith("timeout: no answer in time")


def test_the_request_id_is_taken_from_the_header_or_made_and_echoed(client):
    assert client.get("/", HTTP_X_REQUEST_ID=REQUEST_ID_SENT)["X-Request-ID"] == REQUEST_ID_SENT
    made = client.get("/")["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    for bad in ("x" * 129, "two words", 'quote"d', "new\nline"):
        replaced = request_id_from(bad)
        assert re.fullmatch(r"[0-9a-f]{32}", replaced)


def test_every_line_of_a_request_carries_its_id(client, log_lines):
    response = client.get("/no-such-page/", HTTP_X_REQUEST_ID=REQUEST_ID_SENT)
    assert response.status_code == 404
    assert response["X-Request-ID"] == REQUEST_ID_SENT
    lines = log_lines()
    warning = next(line for line in lines if line["logger"] == "django.request")
    assert warning["message"] == "Not Found: /no-such-page/"
    assert warning["status_code"] == 404
    # (asyncio's "Using selector" comes from the test client, before the request is handled.)
    ids = {line["request_id"] for line in lines if line["logger"] != "asyncio"}
    assert ids == {REQUEST_ID_SENT}, lines


@pytest.mark.django_db(transaction=True)
def test_the_task_a_request_enqueues_logs_with_its_id_in_the_worker(client, session, settings):
    """A question delivered enqueues the next one's preparation; the real worker process, with
    LOG_FORMAT=json, writes only JSON lines, and the task's carry the request's id."""
    settings.PREFETCH = True
    client.force_login(session.user)
    response = client.post(
        next_url(session),
        {"request_id": uuid.uuid4().hex},
        HTTP_X_REQUEST_ID=REQUEST_ID_SENT,
        **HTMX,
    )
    assert response.status_code == 200
    task = DBTaskResult.objects.get(task_path="interviews.tasks.question_prepare")
    assert task.args_kwargs["kwargs"][TASK_KWARG] == REQUEST_ID_SENT

    worker = subprocess.run(
        manage("db_worker", "--batch", "--no-startup-delay", "--no-reload", "--queue-name", "*"),
        cwd=ROOT,
        env={**process_env(), "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert worker.returncode == 0, worker.stdout + worker.stderr
    lines = [json.loads(line) for line in (worker.stdout + worker.stderr).splitlines()]
    task_lines = [line for line in lines if str(task.id) in line["message"]]
    assert [line["message"].rsplit("=", 1)[1] for line in task_lines] == ["RUNNING", "SUCCESSFUL"]
    assert {line["request_id"] for line in task_lines} == {REQUEST_ID_SENT}
    task.refresh_from_db()
    assert task.status == "SUCCESSFUL", task.traceback  # the function never saw the id
    assert task.return_value == "prepared"


def test_no_log_line_carries_an_answer_a_transcript_code_or_a_prompt(
    client, make_user, fake_transcriber, settings, log_lines, caplog, monkeypatch
):
    """Typed answers with the model's feedback (whose prompt holds the answer), one whose
    feedback fails, one refused, a spoken one's transcript, a code answer and a server error
    while an answer is handled: at DEBUG, no record and no written line holds any of them."""
    caplog.set_level(logging.DEBUG)
    fake = fake_transcriber
    engine_reset()
    settings.QUESTION_SOURCE = "openai"
    user = make_user(tokens=5)
    client.force_login(user)

    def start(**data: str) -> InterviewSession:
        response = client.post(reverse("interviews:start"), {"difficulty": "easy", **data})
        return InterviewSession.objects.get(pk=response["Location"].split("/")[-2])

    def buy(session: InterviewSession, text: str = "") -> ServedQuestion:
        if text:
            fake.enqueue(ok(question_payload(text=text)))
        response = client.post(next_url(session), {"request_id": uuid.uuid4().hex}, **HTMX)
        assert response.status_code == 200
        return ServedQuestion.objects.filter(session=session).latest("position")

    def answer(served: ServedQuestion, text: str) -> int:
        return client.post(answer_url(served), {"text": text}, **HTMX).status_code

    session = start(topic="reactjs")
    first = buy(session, "What does memoization buy you in React?")
    fake.enqueue(ok(feedback_payload(score=8)))
    assert answer(first, "Zanzibar: memoization caches the results of pure renders") == 200
    assert "Zanzibar" in fake.received_bodies[-1]["messages"][-1]["content"]  # the prompt

    second = buy(session, "What does useEffect do?")
    fake.enqueue(status(500), status(500))
    assert answer(second, "Quetzal: effects run after the render, feedback fails") == 200

    settings.RATE_LIMIT_FEEDBACK = "1/h/user"
    fake.enqueue(ok(feedback_payload(score=6)))
    assert answer(second, "Effects run after the render, answered again") == 200
    assert answer(second, "Xylophone: refused past the rate limit, long enough") == 429
    assert answer(second, "Xylophone " * 2000) == 422  # too long
    settings.RATE_LIMIT_FEEDBACK = "100/m/user"

    fake.enqueue(transcript("Okapi transcript: Reddis keeps the data in memory"))
    assert upload(client, second, SPOKEN_WAV).status_code == 202
    recording = Recording.objects.get(served=second)
    assert recording_transcribe(recording_id=recording.pk).startswith("transcribed")

    third = buy(session, "How do keys help React?")

    def label_fails(*, served: ServedQuestion) -> str:
        answer_text = Answer.objects.get(served=served).text  # a local holding the answer
        raise RuntimeError(f"cannot label the card of {answer_text}")

    monkeypatch.setattr("interviews.selectors.served_question_label_get", label_fails)
    client.raise_request_exception = False
    assert answer(third, "Wombat: the server fails once the answer is stored") == 500
    client.raise_request_exception = True
    monkeypatch.undo()

    settings.QUESTION_SOURCE = "bank"
    problem = buy(start(topic="algorithms", kind="code", language="python"))
    settings.EXECUTION_BACKEND = "off"  # graded by reading it: no sandbox needed here
    executor_reset()
    try:
        assert answer(problem, "def solve(nums):  # Narwhal\n    return sorted(nums)") == 200
    finally:
        settings.EXECUTION_BACKEND = "bubblewrap"
        executor_reset()

    written = json.dumps(log_lines())
    assert "Internal Server Error" in written
    assert "RuntimeError" in written
    assert "Too Many Requests" in written
    for word in ("Zanzibar", "Quetzal", "Xylophone", "Okapi", "Wombat", "Narwhal"):
        assert word not in written, word
        assert not [r for r in caplog.records if word in r.getMessage()], word


def test_gunicorn_lines_follow_log_format(monkeypatch):
    """deploy/gunicorn.conf.py's logconfig_dict: {} (gunicorn's own format) for text; for json,
    gunicorn's and uvicorn's lines (the uvicorn worker writes through gunicorn's handlers) and
    the access log as JSON objects."""
    monkeypatch.setenv("LOG_FORMAT", "text")
    assert gunicorn_logconfig_dict() == {}
    monkeypatch.setenv("LOG_FORMAT", "json")
    config = gunicorn_logconfig_dict()
    assert config["loggers"]["gunicorn.access"] == {"handlers": ["access"], "propagate": False}
    assert config["loggers"]["gunicorn.error"] == {"handlers": ["error"], "propagate": False}
    assert config["handlers"]["access"]["stream"] == "ext://sys.stdout"
    assert config["handlers"]["error"]["stream"] == "ext://sys.stderr"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(import_string(config["formatters"]["json"]["()"])())
    handler.addFilter(import_string(config["filters"]["request_id"]["()"])())
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/", "1.1", 200),
        None,
    )
    token = REQUEST_ID.set(REQUEST_ID_SENT)
    try:
        handler.handle(record)
    finally:
        REQUEST_ID.reset(token)
    line = json.loads(stream.getvalue())
    assert line["message"] == '127.0.0.1:5000 - "GET / HTTP/1.1" 200'
    assert line["request_id"] == REQUEST_ID_SENT
