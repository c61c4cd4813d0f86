"""Concurrent requests over the real view and the real database (threads, row locks)."""

from collections import Counter
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from config.testing import run_concurrently
from interviews.models import ServedQuestion, Topic
from interviews.services import session_start
from interviews.tests.fakes import CountingBankSource
from ledger.models import Hold, LedgerEntry
from ledger.selectors import account_problem_list

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def counting_source(monkeypatch) -> CountingBankSource:
    source = CountingBankSource()
    monkeypatch.setattr("interviews.services.purchase.question_source_get", lambda: source)
    return source


def post_as(user, url: str, request_id: str, htmx: bool) -> int:
    client = Client()
    client.force_login(user)
    extra: dict[str, Any] = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    return client.post(url, {"request_id": request_id}, **extra).status_code


@pytest.mark.parametrize(
    ("htmx", "tokens", "requests"), [(True, 4, 10), (False, 4, 10), (True, 10, 15)]
)
def test_k_tokens_n_distinct_requests_give_k_questions_and_n_minus_k_402(
    make_user, counting_source, htmx, tokens, requests
):
    user = make_user(tokens=tokens)
    session = session_start(user=user, topic=Topic.objects.get(slug="python"))
    url = reverse("interviews:question_next", kwargs={"session_id": session.pk})
    statuses = run_concurrently(lambda i: post_as(user, url, f"request-{i:04d}", htmx), requests)
    ok = 200 if htmx else 303
    assert Counter(statuses) == {ok: tokens, 402: requests - tokens}
    # Only the requests that reserved a token ever generated. (Two of them may pick the same
    # bank question at once: the loser proposes again, free, so calls can exceed K.)
    assert len(counting_source.threads) == tokens
    assert ServedQuestion.objects.filter(session=session).count() == tokens
    assert LedgerEntry.objects.filter(kind="debit").count() == tokens
    user.token_account.refresh_from_db()
    assert (user.token_account.balance, user.token_account.held) == (0, 0)
    assert len(set(ServedQuestion.objects.values_list("question_id", flat=True))) == tokens
    assert account_problem_list() == []


def test_one_request_id_sent_twenty_times_at_once_charges_once(make_user, counting_source):
    user = make_user(tokens=5)
    session = session_start(user=user, topic=Topic.objects.get(slug="sql"))
    url = reverse("interviews:question_next", kwargs={"session_id": session.pk})
    statuses = run_concurrently(lambda i: post_as(user, url, "double-click-0001", True), 20)
    assert set(statuses) <= {200, 409}
    assert statuses.count(200) >= 1
    assert counting_source.calls == 1
    assert Hold.objects.count() == 1
    assert LedgerEntry.objects.filter(kind="debit").count() == 1
    user.token_account.refresh_from_db()
    assert user.token_account.balance == 4
    assert account_problem_list() == []
