import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from ledger.models import LedgerEntry
from ledger.tests.flow import buy


def test_grant_tokens_writes_an_entry(make_user, capsys):
    user = make_user(tokens=1, email="ada@example.com")
    call_command("grant_tokens", "ADA@example.com", "4", "--reason", "Conference voucher")
    entry = user.token_account.entries.latest("version")
    assert (entry.kind, entry.balance_delta, entry.balance_after, entry.source, entry.reason) == (
        LedgerEntry.Kind.GRANT,
        4,
        5,
        LedgerEntry.Source.COMMAND,
        "Conference voucher",
    )
    assert "balance 5" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody@example.com", "3", "--reason", "x"], "No user with the email"),
        (["ada@example.com", "0", "--reason", "x"], "whole number from 1 to"),
        (["ada@example.com", "-2", "--reason", "x"], "whole number from 1 to"),
        (["ada@example.com", "two", "--reason", "x"], "whole number from 1 to"),
        (["ada@example.com", "1.5", "--reason", "x"], "whole number from 1 to"),
        (["ada@example.com", "99999999999", "--reason", "x"], "whole number from 1 to"),
        (["ada@example.com", "3", "--reason", "   "], "--reason must not be empty"),
    ],
)
def test_grant_tokens_refuses_bad_input_and_writes_nothing(make_user, args, message):
    make_user(tokens=1, email="ada@example.com")
    with pytest.raises(CommandError, match=message):
        call_command("grant_tokens", *args)
    assert LedgerEntry.objects.count() == 1


def test_grant_tokens_requires_a_reason(make_user):
    make_user(tokens=1, email="ada@example.com")
    with pytest.raises(CommandError, match="reason"):
        call_command("grant_tokens", "ada@example.com", "3")


def test_ledger_verify_passes_on_a_clean_ledger(make_user, capsys):
    account = make_user(tokens=3).token_account
    buy(account=account, request_id="a", generate=lambda: "q")
    call_command("ledger_verify")
    assert "OK: 1 account(s) reconcile." in capsys.readouterr().out


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE ledger_tokenaccount SET balance = balance + 5",
        "UPDATE ledger_tokenaccount SET balance = balance + 1, held = held + 1",
        "UPDATE ledger_tokenaccount SET version = version + 1",
    ],
)
def test_ledger_verify_catches_a_tampered_account(make_user, capsys, tamper):
    make_user(tokens=3, email="ok@example.com")
    tampered = make_user(tokens=3, email="tampered@example.com").token_account
    with connection.cursor() as cursor:
        cursor.execute(f"{tamper} WHERE id = %s", [tampered.pk])
    with pytest.raises(SystemExit) as exited:
        call_command("ledger_verify")
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "tampered@example.com" in err
    assert "ok@example.com" not in err
    assert "1 of 2 account(s)" in err


def test_expire_holds_frees_due_reservations(make_user, capsys):
    from datetime import timedelta

    from django.utils import timezone

    from ledger.models import Hold
    from ledger.services import hold_reserve

    account = make_user(tokens=1).token_account
    hold = hold_reserve(account=account, request_id="r", purpose="p", actor=None).hold
    Hold.objects.filter(pk=hold.pk).update(expires_at=timezone.now() - timedelta(seconds=5))
    call_command("expire_holds")
    assert "Expired 1 hold(s)." in capsys.readouterr().out
    account.refresh_from_db()
    assert account.held == 0
