"""Threads racing over real PostgreSQL row locks."""

import threading
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from config.testing import assert_no_transaction_open, run_concurrently
from ledger import services
from ledger.exceptions import HoldNotPending, InsufficientTokens, RequestInProgress
from ledger.models import Hold, LedgerEntry
from ledger.selectors import account_problem_list
from ledger.tests.flow import buy

pytestmark = pytest.mark.django_db(transaction=True)


class CountingGenerator:
    """A stand-in for the LLM: slow enough to overlap, and it checks no transaction is open."""

    def __init__(self, *, fail_every: int = 0) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        self.fail_every = fail_every

    def __call__(self) -> str:
        assert_no_transaction_open()
        with self.lock:
            self.calls += 1
            call = self.calls
        threading.Event().wait(0.05)
        if self.fail_every and call % self.fail_every == 0:
            raise ConnectionError("generation failed")
        return f"question {call}"


@pytest.mark.parametrize(("tokens", "requests"), [(3, 10), (5, 8)])
def test_k_tokens_n_requests_give_exactly_k_questions(make_user, tokens, requests):
    account = make_user(tokens=tokens).token_account
    generate = CountingGenerator()
    results = run_concurrently(
        lambda i: buy(account=account, request_id=f"req-{i}", generate=generate), requests
    )
    captured = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, InsufficientTokens)]
    assert len(captured) == tokens
    assert len(refused) == requests - tokens
    assert generate.calls == tokens
    account.refresh_from_db()
    assert (account.balance, account.held) == (0, 0)
    assert account.entries.filter(kind=LedgerEntry.Kind.DEBIT).count() == tokens
    assert account_problem_list() == []


def test_one_request_id_sent_twenty_times_charges_once(make_user):
    account = make_user(tokens=5).token_account
    generate = CountingGenerator()
    results = run_concurrently(
        lambda i: buy(account=account, request_id="double-click", generate=generate), 20
    )
    served = [r for r in results if isinstance(r, tuple)]
    in_progress = [r for r in results if isinstance(r, RequestInProgress)]
    assert len(served) + len(in_progress) == 20
    assert sum(1 for _, replay in served if not replay) == 1
    assert generate.calls == 1
    assert Hold.objects.count() == 1
    assert account.entries.filter(kind=LedgerEntry.Kind.DEBIT).count() == 1
    account.refresh_from_db()
    assert account.balance == 4
    assert account_problem_list() == []


def test_failures_under_load_are_never_charged(make_user):
    account = make_user(tokens=6).token_account
    generate = CountingGenerator(fail_every=2)
    results = run_concurrently(
        lambda i: buy(account=account, request_id=str(uuid.uuid4()), generate=generate), 12
    )
    captured = sum(1 for r in results if isinstance(r, tuple))
    account.refresh_from_db()
    debits = account.entries.filter(kind=LedgerEntry.Kind.DEBIT).count()
    assert debits == captured == 6 - account.balance
    assert account.held == 0
    assert account_problem_list() == []


def test_capture_and_expiry_racing_exactly_one_wins(make_user):
    account = make_user(tokens=20).token_account
    for attempt in range(10):
        hold = services.hold_reserve(
            account=account, request_id=f"race-{attempt}", purpose="question:test", actor=None
        ).hold

        def resolve(index: int, hold=hold):
            if index == 0:
                return services.hold_capture(hold=hold, reason="Question")
            # The sweeper, running as if the hold's expiry had already come.
            return services.hold_expire_due(now=timezone.now() + timedelta(days=1))

        results = run_concurrently(resolve, 2)
        resolutions = LedgerEntry.objects.filter(
            hold=hold, kind__in=LedgerEntry.RESOLVING_KINDS
        ).count()
        assert resolutions == 1, results
        hold.refresh_from_db()
        captured = hold.status == Hold.Status.CAPTURED
        assert captured == (not isinstance(results[0], HoldNotPending))
        assert results[1] == (0 if captured else 1)
    account.refresh_from_db()
    assert account.held == 0
    assert account_problem_list() == []
