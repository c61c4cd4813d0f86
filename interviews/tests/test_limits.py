"""Rate and in-flight limits on the two routes that spend money: every refusal a 429 with
Retry-After that says when to try again and that nothing was charged."""

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from config.testing import run_concurrently
from interviews.models import Answer, ServedQuestion, Topic
from interviews.services import question_next, session_start
from interviews.tests.fake_openai import feedback_payload, ok, question_payload
from ledger.models import Hold, LedgerEntry
from ledger.selectors import account_problem_list

HTMX = {"HTTP_HX_REQUEST": "true"}


def next_url(session) -> str:
    return reverse("interviews:question_next", kwargs={"session_id": session.pk})


def answer_url(session, position: int = 1) -> str:
    return reverse("interviews:answer", kwargs={"session_id": session.pk, "position": position})


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def balance_and_held(user) -> tuple[int, int]:
    user.token_account.refresh_from_db()
    return user.token_account.balance, user.token_account.held


class InBackground:
    """Run fn in a thread; `result()` joins it (the thread closes its database connection)."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self._result: list[object] = []

        def run() -> None:
            from django.db import connections

            try:
                self._result.append(fn())
            except BaseException as exc:  # handed to the test
                self._result.append(exc)
            finally:
                connections.close_all()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self) -> object:
        self._thread.join(timeout=60)
        assert self._result, "the background request did not finish"
        if isinstance(self._result[0], BaseException):
            raise self._result[0]
        return self._result[0]


# --- Rate limits -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _one_window(monkeypatch) -> None:
    """The rate limits' clock stands still, 30 s into a window: requests a test makes in a row
    fall in one window however slow the machine (a fixed window would otherwise reset when a
    test crosses a minute)."""
    from config import limits

    monkeypatch.setattr(limits, "_now", lambda: 1_800_000_030.0)


@pytest.mark.parametrize("htmx", [True, False])
def test_too_many_question_requests_get_429_not_charged(make_user, settings, htmx):
    settings.RATE_LIMIT_QUESTIONS = "2/m/user,300/m/ip"
    user = make_user(tokens=5)
    session = session_start(user=user, topic=Topic.objects.get(slug="python"))
    client = client_for(user)
    headers = HTMX if htmx else {}
    for n in range(2):
        response = client.post(next_url(session), {"request_id": f"rate-{n:04d}"}, **headers)
        assert response.status_code == (200 if htmx else 303)

    refused = client.post(next_url(session), {"request_id": "rate-0002"}, **headers)

    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    html = refused.content.decode()
    assert "Too many question requests: try again in " in html
    assert "You were not charged." in html
    assert 'role="alert"' in html
    assert not Hold.objects.filter(request_id="rate-0002").exists()
    assert balance_and_held(user) == (3, 0)
    if htmx:
        assert refused["HX-Retarget"] == "#question-alert"
        assert 'hx-swap-oob="innerHTML">3 tokens<' in html  # the badge, out of band
    else:
        assert '<div id="question-alert"' in html  # the whole session page, with the message
        assert ">3 tokens<" in html


@pytest.mark.parametrize("htmx", [True, False])
def test_too_many_feedback_requests_get_429_and_keep_the_answer(make_user, settings, htmx):
    settings.RATE_LIMIT_FEEDBACK = "1/m/user,300/m/ip"
    user = make_user(tokens=1)
    session = session_start(user=user, topic=Topic.objects.get(slug="python"))
    client = client_for(user)
    client.post(next_url(session), {"request_id": "rate-0001"})
    headers = HTMX if htmx else {}
    first = client.post(answer_url(session), {"text": "A first answer, long enough."}, **headers)
    assert first.status_code == (200 if htmx else 303)

    refused = client.post(answer_url(session), {"text": "My second, better answer."}, **headers)

    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    html = refused.content.decode()
    assert "Too many feedback requests: try again in " in html
    assert "You were not charged." in html
    assert "My second, better answer." in html  # nothing typed is lost
    answer = Answer.objects.get()
    assert answer.text == "A first answer, long enough."
    assert answer.served.feedback_requests == 1  # the refusal used up no feedback request
    assert balance_and_held(user) == (0, 0)


def test_an_address_is_limited_across_its_candidates(make_user, settings):
    settings.RATE_LIMIT_QUESTIONS = "20/m/user,2/m/ip"
    sessions = []
    for _ in range(3):
        user = make_user(tokens=2)
        sessions.append((user, session_start(user=user, topic=Topic.objects.get(slug="sql"))))
    statuses = [
        client_for(user).post(next_url(session), {"request_id": "addr-0001"}, **HTMX).status_code
        for user, session in sessions
    ]
    assert statuses == [200, 200, 429]
    user, session = sessions[2]
    elsewhere = client_for(user).post(
        next_url(session), {"request_id": "addr-0002"}, REMOTE_ADDR="198.51.100.4", **HTMX
    )
    assert elsewhere.status_code == 200


def test_rate_limits_false_lets_every_request_through(make_user, settings):
    settings.RATE_LIMITS_ENABLED = False
    settings.RATE_LIMIT_QUESTIONS = settings.RATE_LIMIT_FEEDBACK = "1/m/user,1/m/ip"
    user = make_user(tokens=3)
    session = session_start(user=user, topic=Topic.objects.get(slug="python"))
    client = client_for(user)
    for n in range(3):
        response = client.post(next_url(session), {"request_id": f"off-{n:04d}"}, **HTMX)
        assert response.status_code == 200
        answer = client.post(answer_url(session, n + 1), {"text": "An answer, long enough."})
        assert answer.status_code == 303
    assert balance_and_held(user) == (0, 0)


# --- In flight: one model call per candidate at a time -----------------------------------------


@pytest.fixture
def slow_model(fake_openai, settings):
    """The fake model, with time enough for a request to wait on it while the test acts."""
    settings.LLM_TIMEOUT_SECONDS = 20
    settings.LLM_MAX_RETRIES = 0
    settings.LLM_MAX_IN_FLIGHT_PER_USER = 1
    yield fake_openai
    fake_openai.resume()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("htmx", [True, False])
def test_a_second_question_while_one_is_generated_is_429_and_the_poll_still_works(
    slow_model, make_user, htmx
):
    user = make_user(tokens=3)
    session = session_start(user=user, topic=Topic.objects.get(slug="python"))
    headers = HTMX if htmx else {}
    slow_model.enqueue(ok(question_payload(text="What does the GIL protect?")))
    slow_model.pause()
    first = InBackground(
        lambda: client_for(user).post(next_url(session), {"request_id": "slow-0001"}, **headers)
    )
    slow_model.wait_for_requests(1)  # the first question is with the model
    client = client_for(user)

    # The page's poll of that request (the same id) is told to wait, never refused.
    poll = client.post(next_url(session), {"request_id": "slow-0001"}, **HTMX)
    assert poll.status_code == 409
    assert poll["Retry-After"] == "2"

    # Another question at the same time is refused at once, its reservation released.
    refused = client.post(next_url(session), {"request_id": "other-0002"}, **headers)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "5"
    html = refused.content.decode()
    assert "You already have a question or feedback being prepared: try again in 5 seconds." in html
    assert "You were not charged." in html
    assert Hold.objects.get(request_id="other-0002").status == Hold.Status.RELEASED
    assert balance_and_held(user) == (3, 1)  # only the first question's token is held
    assert slow_model.requests == 1

    slow_model.resume()
    assert first.result().status_code == (200 if htmx else 303)
    # The poll now gets the question, charged once.
    replay = client.post(next_url(session), {"request_id": "slow-0001"}, **HTMX)
    assert replay.status_code == 200
    assert "What does the GIL protect?" in replay.content.decode()
    assert slow_model.requests == 1
    assert balance_and_held(user) == (2, 0)
    assert LedgerEntry.objects.filter(kind="debit").count() == 1
    # And the next question is free to go.
    after = client.post(next_url(session), {"request_id": "next-0003"}, **HTMX)
    assert after.status_code == 200
    assert account_problem_list() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("htmx", [True, False])
def test_a_second_feedback_while_one_is_with_the_model_is_429(slow_model, make_user, htmx):
    user = make_user(tokens=1)
    session = session_start(user=user, topic=Topic.objects.get(slug="python"))
    slow_model.enqueue(ok(question_payload(text="What does the GIL protect?")))
    question_next(session=session, request_id="req-00001")
    slow_model.enqueue(ok(feedback_payload(score=8)))
    slow_model.pause()
    headers = HTMX if htmx else {}
    first = InBackground(
        lambda: client_for(user).post(
            answer_url(session), {"text": "It protects the interpreter's state."}, **headers
        )
    )
    slow_model.wait_for_requests(2)  # the question, then the first feedback

    refused = client_for(user).post(
        answer_url(session), {"text": "A second answer at the same time."}, **headers
    )
    assert refused.status_code == 429
    assert refused["Retry-After"] == "5"
    html = refused.content.decode()
    assert "You already have a question or feedback being prepared: try again in 5 seconds." in html
    assert "You were not charged." in html
    assert "A second answer at the same time." in html  # nothing typed is lost
    # The refusal never reached the model, nor used up one of the question's feedback requests.
    assert ServedQuestion.objects.get().feedback_requests == 1
    assert slow_model.requests == 2

    slow_model.resume()
    assert first.result().status_code == (200 if htmx else 303)
    answer = Answer.objects.get()
    assert (answer.score, answer.text) == (8, "It protects the interpreter's state.")
    assert slow_model.requests == 2
    assert balance_and_held(user) == (0, 0)


@pytest.mark.django_db(transaction=True)
def test_thirty_concurrent_feedback_requests_make_one_model_call(slow_model, make_user):
    """Thirty at once from one candidate: one reaches the model, 29 are refused at once."""
    user = make_user(tokens=1)
    session = session_start(user=user, topic=Topic.objects.get(slug="python"))
    slow_model.enqueue(ok(question_payload(text="What does the GIL protect?")))
    question_next(session=session, request_id="req-00001")
    slow_model.enqueue(*(ok(feedback_payload()) for _ in range(30)))
    slow_model.pause()
    refusals = threading.Semaphore(0)

    def post(index: int) -> int:
        text = {"text": f"Answer {index}, long enough."}
        status = client_for(user).post(answer_url(session), text).status_code
        if status == 429:
            refusals.release()
        return status

    everyone = InBackground(lambda: run_concurrently(post, 30))
    for _ in range(29):  # the model answers once the other 29 have had their answer
        assert refusals.acquire(timeout=60)
    slow_model.resume()

    assert Counter(everyone.result()) == {303: 1, 429: 29}
    assert slow_model.requests == 1 + 1
    assert ServedQuestion.objects.get().feedback_requests == 1
