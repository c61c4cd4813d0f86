"""The next question prepared in the background (PREFETCH): never charged, never shown, bought
through the same two-phase purchase when asked if still fresh, at the session's difficulty and in
its pass; discarded otherwise, when the session ends, or when it is too old."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from config.testing import balance
from interviews.models import Answer, PreparedQuestion, ServedQuestion
from interviews.services import (
    prepared_discard,
    question_next,
    question_prepare,
    session_end,
)
from interviews.tests.fake_openai import ok, question_payload
from ledger.models import LedgerEntry
from ledger.selectors import account_problem_list

READY = PreparedQuestion.Status.READY


def test_a_prepared_question_is_not_charged_nor_shown(logged_in_session):
    client, session, candidate = logged_in_session
    assert question_prepare(session_id=session.pk) == "prepared"
    prepared = PreparedQuestion.objects.get(session=session)
    assert prepared.status == READY
    assert balance(candidate) == 3
    assert not LedgerEntry.objects.exclude(kind="grant").exists()
    assert prepared.text not in client.get(session.get_absolute_url()).content.decode()
    # One ready question per session.
    assert question_prepare(session_id=session.pk) == "one is ready already"


def test_asking_buys_the_prepared_question_once(logged_in_session):
    _client, session, candidate = logged_in_session
    question_prepare(session_id=session.pk)
    prepared = PreparedQuestion.objects.get(session=session)
    served = question_next(session=session, request_id="prefetch-0001").served
    assert served.question_id == prepared.question_id
    prepared.refresh_from_db()
    assert prepared.status == PreparedQuestion.Status.TAKEN
    assert balance(candidate) == 2
    assert LedgerEntry.objects.filter(kind="debit").count() == 1
    # Delivering it asked the worker to prepare the next one.
    assert DBTaskResult.objects.filter(task_path__endswith="question_prepare").exists()
    assert account_problem_list() == []


@pytest.mark.parametrize("change", ["stale", "difficulty"])
def test_a_stale_or_changed_prepared_question_is_discarded(logged_in_session, change):
    _client, session, candidate = logged_in_session
    question_prepare(session_id=session.pk)
    prepared = PreparedQuestion.objects.get(session=session)
    if change == "stale":
        PreparedQuestion.objects.filter(pk=prepared.pk).update(
            created_at=timezone.now() - timedelta(hours=1)
        )
    else:
        PreparedQuestion.objects.filter(pk=prepared.pk).update(asked_difficulty="hard")
    served = question_next(session=session, request_id="prefetch-0001").served
    prepared.refresh_from_db()
    assert prepared.status == PreparedQuestion.Status.DISCARDED
    assert ServedQuestion.objects.get(pk=served.pk)  # generated as usual instead
    assert balance(candidate) == 2


def test_ending_the_session_discards_it_and_the_sweeper_discards_old_ones(logged_in_session):
    _client, session, candidate = logged_in_session
    question_prepare(session_id=session.pk)
    session_end(session=session)
    assert PreparedQuestion.objects.get().status == PreparedQuestion.Status.DISCARDED
    assert question_prepare(session_id=session.pk) == "no open session"
    assert balance(candidate) == 3

    other = logged_in_session[1].__class__.objects.create(
        user=candidate, topic=session.topic, difficulty="easy"
    )
    question_prepare(session_id=other.pk)
    assert prepared_discard() == 0  # fresh
    PreparedQuestion.objects.filter(session=other).update(
        created_at=timezone.now() - timedelta(hours=1)
    )
    assert prepared_discard() == 1


def test_prefetch_off(logged_in_session, settings):
    _client, session, _candidate = logged_in_session
    settings.PREFETCH = False
    assert question_prepare(session_id=session.pk) == "off"
    question_next(session=session, request_id="prefetch-0001")
    assert not DBTaskResult.objects.exists()
    assert not PreparedQuestion.objects.exists()


def test_an_llm_prepared_question_counts_in_the_budget_not_the_candidates_limits(
    fake_openai, logged_in_session, settings
):
    from interviews.models import ModelCallDay

    client, session, candidate = logged_in_session
    settings.LLM_MAX_IN_FLIGHT_PER_USER = 1
    settings.LLM_DAILY_CALL_BUDGET = 100
    fake_openai.enqueue(ok(question_payload(text="Prepared: how do keys help React?")))
    assert question_prepare(session_id=session.pk) == "prepared"
    assert sum(ModelCallDay.objects.values_list("calls", flat=True)) == 1
    # Bought at once, with no second model call and no in-flight slot.
    response = client.post(
        reverse("interviews:question_next", kwargs={"session_id": session.pk}),
        {"request_id": "prefetch-0001"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert "Prepared: how do keys help React?" in response.content.decode()
    assert fake_openai.requests == 1
    assert balance(candidate) == 2
    question = ServedQuestion.objects.get(session=session).question
    assert (question.source, question.model) == ("openai", "gpt-test")
    assert not Answer.objects.exists()


def test_staff_see_prepared_questions(admin_client, logged_in_session):
    _client, session, _candidate = logged_in_session
    question_prepare(session_id=session.pk)
    session_end(session=session)
    page = admin_client.get("/admin/interviews/preparedquestion/?status=discarded")
    assert page.status_code == 200
    assert "Discarded" in page.content.decode()


@pytest.fixture
def logged_in_session(client, candidate, session):
    client.force_login(candidate)
    return client, session, candidate
