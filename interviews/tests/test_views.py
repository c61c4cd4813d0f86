import re
import uuid

import pytest
from django.urls import reverse

from config.testing import badge
from interviews.exceptions import GenerationFailed
from interviews.models import Answer, InterviewSession, ServedQuestion
from ledger.models import LedgerEntry

HTMX = {"HTTP_HX_REQUEST": "true"}


def next_url(session) -> str:
    return reverse("interviews:question_next", kwargs={"session_id": session.pk})


@pytest.fixture
def logged_in(client, candidate):
    client.force_login(candidate)
    return client


def test_dashboard_lists_topics_with_pool_progress(logged_in, session):
    logged_in.post(next_url(session), {"request_id": "req-00001"})
    response = logged_in.get(reverse("interviews:dashboard"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "ReactJS" in html
    assert "1 of 24 seen" in html
    assert "0 of 24 seen" in html  # the other topics
    headings = re.findall(r'<h2 id="topic-([\w-]+)">', html)
    assert headings[:3] == ["reactjs", "javascript", "typescript"]  # the bank's order
    assert badge(html) == 2


def test_start_redirects_to_the_new_session(logged_in, candidate):
    response = logged_in.post(
        reverse("interviews:start"), {"topic": "python", "difficulty": "hard"}
    )
    session = InterviewSession.objects.get(user=candidate)
    assert response.status_code == 302
    assert response["Location"] == session.get_absolute_url()
    assert (session.topic.slug, session.difficulty) == ("python", "hard")


def test_start_without_difficulty_uses_medium(logged_in, candidate):
    logged_in.post(reverse("interviews:start"), {"topic": "sql"})
    assert InterviewSession.objects.get(user=candidate).difficulty == "medium"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"topic": "cobol"}, "That topic does not exist"),
        ({}, "Choose a topic"),
        ({"topic": "sql", "difficulty": "insane"}, "Difficulty must be easy, medium or hard"),
    ],
)
def test_start_with_bad_input_says_what_was_wrong(logged_in, data, message):
    response = logged_in.post(reverse("interviews:start"), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not InterviewSession.objects.exists()


def test_htmx_question_returns_the_card_and_the_new_badge_out_of_band(logged_in, session):
    response = logged_in.post(next_url(session), {"request_id": "req-00001"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="q-1"' in html
    assert "1 token · 3 -&gt; 2" in html
    assert 'hx-swap-oob="innerHTML"' in html
    assert badge(html) == 2
    assert "<html" not in html  # a fragment, not the page


def test_plain_post_redirects_303_to_the_session(logged_in, session):
    response = logged_in.post(next_url(session), {"request_id": "req-00001"})
    assert response.status_code == 303
    assert response["Location"] == f"{session.get_absolute_url()}#q-1"
    page = logged_in.get(session.get_absolute_url()).content.decode()
    assert "1 token · 3 -&gt; 2" in page
    assert badge(page) == 2


def test_the_session_page_offers_a_fresh_request_id_each_time(logged_in, session):
    ids = {
        re.search(
            r'name="request_id" value="([^"]+)"',
            logged_in.get(session.get_absolute_url()).content.decode(),
        ).group(1)
        for _ in range(2)
    }
    assert len(ids) == 2


def test_402_when_out_of_tokens_and_nothing_charged(logged_in, session, candidate):
    for i in range(3):
        assert logged_in.post(next_url(session), {"request_id": f"req-0000{i}"}).status_code == 303
    response = logged_in.post(next_url(session), {"request_id": "req-00009"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 402
    assert 'role="alert"' in html
    assert "You were not charged" in html
    assert response["HX-Retarget"] == "#question-alert"
    assert badge(html) == 0
    plain = logged_in.post(next_url(session), {"request_id": "req-00010"})
    assert plain.status_code == 402
    assert "You were not charged" in plain.content.decode()
    assert ServedQuestion.objects.count() == 3


def test_409_while_the_same_request_is_in_progress(logged_in, session, candidate):
    from ledger.services import account_get_or_open, hold_reserve

    hold_reserve(
        account=account_get_or_open(user=candidate),
        request_id="req-running",
        purpose=f"question:{session.pk}",
        actor=candidate,
    )
    response = logged_in.post(next_url(session), {"request_id": "req-running"}, **HTMX)
    assert response.status_code == 409
    assert 'role="alert"' in response.content.decode()
    assert response["Retry-After"] == "2"  # the page asks again, with the same id


def test_the_retry_of_a_dead_attempt_is_not_charged_and_frees_its_token(
    logged_in, session, candidate
):
    """The server running the first attempt died: once its reservation is due, the page's retry
    with the same id frees it at once and is told "not charged"; a new click then works."""
    from datetime import timedelta

    from django.utils import timezone

    from ledger.models import Hold
    from ledger.services import account_get_or_open, hold_reserve

    hold = hold_reserve(
        account=account_get_or_open(user=candidate),
        request_id="req-crashed",
        purpose=f"question:{session.pk}",
        actor=candidate,
    ).hold
    Hold.objects.filter(pk=hold.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    retry = logged_in.post(next_url(session), {"request_id": "req-crashed"}, **HTMX)
    assert retry.status_code == 503
    assert "You were not charged" in retry.content.decode()
    assert Hold.objects.get(pk=hold.pk).status == Hold.Status.EXPIRED
    fresh = logged_in.post(next_url(session), {"request_id": "req-after-crash"}, **HTMX)
    assert fresh.status_code == 200
    candidate.token_account.refresh_from_db()
    assert (candidate.token_account.balance, candidate.token_account.held) == (2, 0)


def test_422_when_a_request_id_is_reused_for_another_session(logged_in, session, candidate, topic):
    from interviews.services import session_start

    other = session_start(user=candidate, topic=topic)
    assert logged_in.post(next_url(session), {"request_id": "req-00001"}).status_code == 303
    response = logged_in.post(next_url(other), {"request_id": "req-00001"}, **HTMX)
    assert response.status_code == 422
    assert 'role="alert"' in response.content.decode()
    assert ServedQuestion.objects.count() == 1


def test_503_when_generation_fails_and_nothing_charged(logged_in, session, candidate, monkeypatch):
    class Broken:
        name = "broken"
        calls_model = False

        async def propose(self, **kwargs):
            raise GenerationFailed("server_error", "500 from the model")

    monkeypatch.setattr("interviews.services.purchase.question_source_get", Broken)
    response = logged_in.post(next_url(session), {"request_id": "req-00001"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 503
    assert "You were not charged" in html
    assert badge(html) == 3
    # The same request id again replays the failure; it never charges.
    again = logged_in.post(next_url(session), {"request_id": "req-00001"}, **HTMX)
    assert again.status_code == 503
    candidate.token_account.refresh_from_db()
    assert candidate.token_account.balance == 3


def test_a_repeated_request_id_returns_the_same_question_once_charged(
    logged_in, session, candidate
):
    first = logged_in.post(next_url(session), {"request_id": "req-00001"}, **HTMX)
    again = logged_in.post(next_url(session), {"request_id": "req-00001"}, **HTMX)
    assert again.status_code == 200
    assert 'id="q-1"' in again.content.decode()  # the page swaps it over the card it shows
    assert re.search(r'class="question-text"[^>]*>(.*?)<', first.content.decode()).group(
        1
    ) == re.search(r'class="question-text"[^>]*>(.*?)<', again.content.decode()).group(1)
    assert LedgerEntry.objects.filter(kind="debit").count() == 1


@pytest.mark.parametrize(
    "request_id", ["", "short", "x" * 65, "has space in it", "<script>alert</script>"]
)
def test_400_for_a_bad_request_id(logged_in, session, request_id):
    response = logged_in.post(next_url(session), {"request_id": request_id}, **HTMX)
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert not LedgerEntry.objects.filter(kind="hold").exists()


def test_an_ended_session_refuses_questions(logged_in, session):
    logged_in.post(reverse("interviews:end", kwargs={"session_id": session.pk}))
    response = logged_in.post(next_url(session), {"request_id": "req-00001"}, **HTMX)
    assert response.status_code == 409
    assert "This session has ended" in response.content.decode()


def test_get_on_the_question_route_is_not_allowed(logged_in, session):
    assert logged_in.get(next_url(session)).status_code == 405


def test_answer_gets_feedback_and_costs_nothing(logged_in, session, candidate):
    logged_in.post(next_url(session), {"request_id": "req-00001"})
    url = reverse("interviews:answer", kwargs={"session_id": session.pk, "position": 1})
    response = logged_in.post(url, {"text": "A reasonably detailed answer " * 5}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "/ 10" in html
    assert "A model outline" in html
    answer = Answer.objects.get()
    assert answer.feedback_source == "rubric"
    assert 0 <= answer.score <= 10
    candidate.token_account.refresh_from_db()
    assert candidate.token_account.balance == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "Write your answer"), ("too short", "too short"), ("x" * 5001, "too long")],
)
def test_answer_length_limits_have_clear_messages(logged_in, session, text, message):
    logged_in.post(next_url(session), {"request_id": "req-00001"})
    url = reverse("interviews:answer", kwargs={"session_id": session.pk, "position": 1})
    for extra in (HTMX, {}):
        response = logged_in.post(url, {"text": text}, **extra)
        assert response.status_code == 422
        assert message in response.content.decode()
    assert not Answer.objects.exists()


def test_the_model_text_is_escaped(logged_in, session, monkeypatch):
    from interviews.tests.fakes import ScriptedSource

    monkeypatch.setattr(
        "interviews.services.purchase.question_source_get",
        lambda: ScriptedSource("<img src=x onerror=alert(1)> What is XSS?"),
    )
    html = logged_in.post(next_url(session), {"request_id": "req-00001"}, **HTMX).content.decode()
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_ending_a_session_shows_the_summary(logged_in, session):
    logged_in.post(next_url(session), {"request_id": "req-00001"})
    url = reverse("interviews:answer", kwargs={"session_id": session.pk, "position": 1})
    logged_in.post(url, {"text": "An answer that is long enough to be graded by the rubric."})
    response = logged_in.post(
        reverse("interviews:end", kwargs={"session_id": session.pk}), follow=True
    )
    html = response.content.decode()
    assert "Session summary" in html
    assert re.search(r"<dt>Questions</dt><dd>1</dd>", html)
    assert re.search(r"<dt>Answered</dt><dd>1</dd>", html)


def test_another_users_session_and_answers_are_404(client, session, make_user):
    intruder = make_user(tokens=5)
    client.force_login(intruder)
    assert client.get(session.get_absolute_url()).status_code == 404
    assert client.post(next_url(session), {"request_id": "req-00001"}).status_code == 404
    answer_url = reverse("interviews:answer", kwargs={"session_id": session.pk, "position": 1})
    assert client.post(answer_url, {"text": "stealing an answer here"}).status_code == 404
    end_url = reverse("interviews:end", kwargs={"session_id": session.pk})
    assert client.post(end_url).status_code == 404
    intruder.token_account.refresh_from_db()
    assert intruder.token_account.balance == 5
    assert client.get(f"/interviews/{uuid.uuid4()}/").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "/interviews/",
        "/tokens/",
        "/tokens/what-costs-a-token/",
        "/accounts/profile/",
        "/admin/ledger/ledgerentry/",
    ],
)
def test_pages_require_login(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert "login" in response["Location"]


def test_question_route_requires_login(client, session):
    response = client.post(next_url(session), {"request_id": "req-00001"})
    assert response.status_code == 302
    assert not LedgerEntry.objects.filter(kind="hold").exists()


def test_receipts_list_every_change_newest_first(logged_in, session, candidate, make_user):
    from ledger.services import account_grant

    other = make_user(tokens=1)
    account_grant(
        account=other.token_account, amount=2, actor=None, source="system", reason="Not yours"
    )
    logged_in.post(next_url(session), {"request_id": "req-00001"})
    logged_in.post(next_url(session), {"request_id": "req-00002"})
    html = logged_in.get(reverse("ledger:entries")).content.decode()
    rows = re.findall(r'<tr class="entry-(\w+)">', html)
    assert rows == ["debit", "debit", "grant"]
    assert "see the question" in html
    assert "Welcome tokens" in html
    assert "Not yours" not in html  # each candidate reads only their own entries


def test_receipts_are_paginated(logged_in, candidate):
    from ledger.services import account_grant

    for _ in range(30):
        account_grant(
            account=candidate.token_account, amount=1, actor=None, source="system", reason="x"
        )
    first = logged_in.get(reverse("ledger:entries")).content.decode()
    second = logged_in.get(reverse("ledger:entries"), {"page": 2}).content.decode()
    assert first.count('<tr class="entry-') == 25
    assert second.count('<tr class="entry-') == 6
    assert "Page 2 of 2" in second


def test_what_costs_a_token_is_linked_from_the_badge(logged_in):
    html = logged_in.get(reverse("interviews:dashboard")).content.decode()
    assert f'class="token-badge" href="{reverse("ledger:costs")}"' in html
    page = logged_in.get(reverse("ledger:costs")).content.decode()
    assert "costs exactly 1 token" in page
    assert "never goes below zero" in page


def test_refreshing_and_browsing_cost_nothing(logged_in, session, candidate):
    logged_in.post(next_url(session), {"request_id": "req-00001"})
    entries = LedgerEntry.objects.count()
    pages = [
        session.get_absolute_url(),
        reverse("interviews:dashboard"),
        reverse("ledger:entries"),
        reverse("ledger:costs"),
        reverse("accounts:profile"),
    ]
    for _ in range(3):
        for url in pages:
            assert logged_in.get(url).status_code == 200
            assert logged_in.get(url, **HTMX).status_code == 200
    assert LedgerEntry.objects.count() == entries
    candidate.token_account.refresh_from_db()
    assert (candidate.token_account.balance, candidate.token_account.held) == (2, 0)


def test_feedback_requests_per_question_are_capped(logged_in, session, monkeypatch):
    monkeypatch.setattr("interviews.services.answers.MAX_FEEDBACK_REQUESTS", 2)
    logged_in.post(next_url(session), {"request_id": "req-00001"})
    url = reverse("interviews:answer", kwargs={"session_id": session.pk, "position": 1})
    for attempt in range(2):
        response = logged_in.post(url, {"text": f"Answer number {attempt}, long enough."}, **HTMX)
        assert response.status_code == 200
    response = logged_in.post(url, {"text": "A third answer, long enough."}, **HTMX)
    assert response.status_code == 429
    assert "the most there is" in response.content.decode()
    assert "A third answer, long enough." in response.content.decode()  # nothing lost
    answer = Answer.objects.get()
    assert answer.text == "Answer number 1, long enough."
    assert answer.served.feedback_requests == 2


def test_dashboard_progress_counts_the_current_pass_after_a_recycle(logged_in, session, topic):
    from interviews.models import Question

    keep = Question.objects.filter(topic=topic).values("pk")[:2]
    Question.objects.filter(topic=topic).exclude(pk__in=keep).update(is_active=False)
    for i in range(3):  # two questions, then the pool recycles
        assert logged_in.post(next_url(session), {"request_id": f"req-0000{i}"}).status_code == 303
    html = logged_in.get(reverse("interviews:dashboard")).content.decode()
    assert "1 of 2 seen" in html
    assert "pass 2" in html
    session_page = logged_in.get(session.get_absolute_url()).content.decode()
    assert "1 of 2 ReactJS questions seen (pass 2)" in session_page
