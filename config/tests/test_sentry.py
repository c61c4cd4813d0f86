"""Error reports: an exception raised while an answer is handled makes one event, sent through a
capturing transport, in which the answer appears nowhere; with SENTRY_DSN unset nothing starts."""

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from django.urls import reverse
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from config.logging import WITHHELD
from config.sentry import event_scrub, sentry_init
from config.tests.test_scheduler import ROOT
from interviews.models import Answer, InterviewSession, ServedQuestion, Topic
from interviews.services import session_start

HTMX = {"HTTP_HX_REQUEST": "true"}
ANSWER = "Capybara-answer: an index trades slower writes for faster lookups"


class CapturingTransport(Transport):
    """Keeps the envelopes the SDK would send."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)


@pytest.fixture
def reports() -> Iterator[CapturingTransport]:
    transport = CapturingTransport()
    assert sentry_init(dsn="https://public@errors.example.com/1", transport=transport)
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


@pytest.fixture
def served(client, make_user) -> ServedQuestion:
    session: InterviewSession = session_start(
        user=make_user(tokens=3), topic=Topic.objects.get(slug="reactjs"), difficulty="easy"
    )
    client.force_login(session.user)
    url = reverse("interviews:question_next", kwargs={"session_id": session.pk})
    assert client.post(url, {"request_id": uuid.uuid4().hex}, **HTMX).status_code == 200
    return ServedQuestion.objects.get(session=session)


def test_an_error_while_an_answer_is_handled_is_reported_once_without_the_answer(
    client, served, reports, monkeypatch
):
    def label_fails(*, served: ServedQuestion) -> str:
        answer_text = Answer.objects.get(served=served).text  # stored, then a local variable
        raise RuntimeError(f"cannot label the card of {answer_text}")

    monkeypatch.setattr("interviews.selectors.served_question_label_get", label_fails)
    client.raise_request_exception = False
    url = reverse("interviews:answer", kwargs={"session_id": served.session_id, "position": 1})
    response = client.post(
        f"{url}?draft={ANSWER.replace(' ', '+')}",
        {"text": ANSWER},
        HTTP_X_REQUEST_ID="req-sentry-1",
        HTTP_REFERER=f"http://testserver/?q={ANSWER.replace(' ', '+')}",
        **HTMX,
    )
    assert response.status_code == 500
    sentry_sdk.flush()

    events = [
        item.payload.json
        for envelope in reports.envelopes
        for item in envelope.items
        if item.type == "event"
    ]
    assert len(events) == 1
    event = events[0]
    (error,) = event["exception"]["values"]
    assert error["type"] == "RuntimeError"
    assert error["value"] == WITHHELD
    assert any(frame["function"] == "label_fails" for frame in error["stacktrace"]["frames"])
    assert event["tags"]["request_id"] == "req-sentry-1"
    assert event["transaction"] == "/interviews/{session_id}/questions/{position}/answer/"
    serialized = b"".join(envelope.serialize() for envelope in reports.envelopes)
    assert b"Capybara" not in serialized
    assert json.dumps(events).count("Capybara") == 0
    # Nor who sent it: no email address, no IP address.
    assert served.session.user.email.encode() not in serialized
    assert "ip_address" not in event.get("user", {})


def test_the_scrubber_removes_what_could_carry_an_answer():
    event: dict[str, Any] = {
        "request": {
            "url": f"https://mockroom.example.com/a/?q={ANSWER}",
            "query_string": f"q={ANSWER}",
            "data": {"text": ANSWER},
            "cookies": {"sessionid": "secret"},
            "headers": {"User-Agent": "test", "Cookie": "sessionid=secret", "X-Draft": ANSWER},
            "env": {"REMOTE_ADDR": "10.0.0.1"},
        },
        "exception": {
            "values": [
                {
                    "type": "ValidationError",
                    "module": "pydantic_core._pydantic_core",
                    "value": f"input_value='{ANSWER}'",
                    "stacktrace": {"frames": [{"function": "f", "vars": {"text": ANSWER}}]},
                }
            ]
        },
        "breadcrumbs": {
            "values": [
                {
                    "category": "query",
                    "message": "INSERT ... (%s)",
                    "data": {"db.params": [ANSWER]},
                },
                {
                    "category": "httplib",
                    "data": {"url": "https://api.openai.com/v1?x=1", "body": ANSWER},
                },
                {"category": "subprocess", "message": f"bwrap python -c '{ANSWER}'"},
                {"type": "log", "category": "interviews", "message": "ok", "data": {"x": ANSWER}},
            ]
        },
        "spans": [{"op": "subprocess", "description": ANSWER, "data": {"args": ANSWER}}],
        "extra": {"sys.argv": ["manage.py"], "request": f"<WSGIRequest {ANSWER}>"},
        "user": {"id": 1, "email": "a@example.com"},
    }
    scrubbed = event_scrub(event, {})
    assert "Capybara" not in json.dumps(scrubbed)
    assert scrubbed["request"]["headers"] == {"User-Agent": "test"}
    assert scrubbed["request"]["url"] == "https://mockroom.example.com/a/"
    crumbs = scrubbed["breadcrumbs"]["values"]
    assert [crumb.get("category") for crumb in crumbs] == ["query", "httplib", "interviews"]
    assert crumbs[1]["data"] == {"url": "https://api.openai.com/v1"}
    assert scrubbed["extra"] == {"sys.argv": ["manage.py"]}


def test_without_a_dsn_nothing_is_initialised():
    """The settings start the SDK for every process that loads them (the web server, the task
    workers, the scheduler) when SENTRY_DSN is set, and do not even import it otherwise."""
    assert sentry_init(dsn="") is False
    probe = (
        "import django, sys; django.setup(); "
        "sdk = sys.modules.get('sentry_sdk'); "
        "active = sdk is not None and sdk.get_client().is_active(); "
        "print('sentry_sdk' in sys.modules, active)"
    )
    env = {"DJANGO_SETTINGS_MODULE": "config.settings", "SECRET_KEY": "x", "PATH": ""}
    for dsn, expected in (
        ("", "False False"),
        ("https://public@errors.example.com/1", "True True"),
    ):
        out = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ROOT,
            env={**env, "SENTRY_DSN": dsn},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        assert out == expected, dsn
