"""The ledger's background tasks do their job (called directly: the worker is tested in
config/tests/test_scheduler.py)."""

import logging
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from accounts.models import User
from ledger.models import Hold
from ledger.services import hold_reserve
from ledger.tasks import holds_expire_due, ledger_verify
from ledger.tests.flow import buy


def test_holds_expire_due_frees_a_reservation_past_its_expiry(make_user):
    account = make_user(tokens=2).token_account
    due = hold_reserve(account=account, request_id="due", purpose="p", actor=None).hold
    fresh = hold_reserve(account=account, request_id="fresh", purpose="p", actor=None).hold
    Hold.objects.filter(pk=due.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert holds_expire_due.call() == 1

    due.refresh_from_db()
    fresh.refresh_from_db()
    account.refresh_from_db()
    assert (due.status, fresh.status) == (Hold.Status.EXPIRED, Hold.Status.PENDING)
    assert (account.balance, account.held) == (2, 1)


def test_ledger_verify_on_a_clean_ledger_alerts_nobody(make_user, staff_user, mailoutbox, caplog):
    account = make_user(tokens=3).token_account
    buy(account=account, request_id="a", generate=lambda: "q")

    with caplog.at_level(logging.INFO, logger="ledger.tasks"):
        assert ledger_verify.call() == 0

    assert mailoutbox == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def tamper(account) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ledger_tokenaccount SET balance = balance + 5 WHERE id = %s", [account.pk]
        )


def test_ledger_verify_on_a_tampered_account_logs_an_error_and_emails_staff(
    make_user, staff_user, mailoutbox, caplog
):
    make_user(tokens=3, email="ok@example.com")
    tamper(make_user(tokens=3, email="tampered@example.com").token_account)
    User.objects.create_user(email="other-staff@example.com", is_staff=True)
    User.objects.create_user(email="gone-staff@example.com", is_staff=True, is_active=False)

    assert ledger_verify.call() == 1

    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.name == "ledger.tasks"
    assert "tampered@example.com" in error.getMessage()
    assert "ok@example.com" not in error.getMessage()
    assert "1 of 2 account(s) do not reconcile" in error.getMessage()
    [email] = mailoutbox
    assert sorted(email.to) == ["other-staff@example.com", "staff@example.com"]
    assert "Ledger check failed" in email.subject
    assert "tampered@example.com" in email.body
    assert "balance 8 != sum of balance deltas 3" in email.body
    assert "ok@example.com" not in email.body


def test_ledger_verify_with_no_staff_still_logs_the_error(make_user, mailoutbox, caplog):
    tamper(make_user(tokens=3, email="tampered@example.com").token_account)

    assert ledger_verify.call() == 1

    assert mailoutbox == []
    assert [
        (r.name, r.levelno) for r in caplog.records if r.name.startswith(("ledger", "config"))
    ] == [
        ("ledger.tasks", logging.ERROR),
        ("config.alerts", logging.WARNING),  # nobody to email
    ]
