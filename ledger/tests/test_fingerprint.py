"""manage.py ledger_fingerprint: what a backup of the ledger must bring back, account by account."""

import json

import pytest
from django.core.management import call_command
from django.db import connection

from ledger.fingerprint import ledger_fingerprint_get
from ledger.models import LedgerEntry
from ledger.services import account_grant
from ledger.tests.flow import buy


def test_every_stored_column_of_an_entry_is_hashed(db):
    with connection.cursor() as cursor:
        table = connection.introspection.get_table_description(cursor, LedgerEntry._meta.db_table)
    assert set(ledger_fingerprint_get().columns) == {column.name for column in table}


def test_each_account_has_its_balance_version_and_a_stable_hash_of_its_entries(make_user):
    user = make_user(tokens=3)
    buy(account=user.token_account, request_id="r1", generate=lambda: "a question")
    other = make_user(tokens=1)
    first = ledger_fingerprint_get()
    account = first.accounts[user.token_account.pk]
    assert (account.balance, account.held, account.version) == (2, 0, 3)
    assert (account.entries, account.last_version) == (3, 3)  # grant, hold, debit
    assert first == ledger_fingerprint_get()
    assert account.sha256 != first.accounts[other.token_account.pk].sha256
    assert first.entries == 4


def test_compare_passes_on_the_same_ledger_and_names_each_account_that_differs(
    make_user, tmp_path, capsys
):
    user = make_user(tokens=3)
    make_user(tokens=2)
    saved = tmp_path / "ledger-fingerprint.json"
    call_command("ledger_fingerprint", "--output", str(saved))
    assert json.loads(saved.read_text())["entries"] == 2
    call_command("ledger_fingerprint", "--compare", str(saved))
    assert "OK: 2 account(s) and 2 entries match" in capsys.readouterr().out

    account_grant(
        account=user.token_account, amount=1, actor=None, source="command", reason="Voucher"
    )
    with pytest.raises(SystemExit) as exit_:
        call_command("ledger_fingerprint", "--compare", str(saved))
    assert exit_.value.code == 1
    errors = capsys.readouterr().err
    pk = user.token_account.pk
    assert (
        f"account {pk}: balance 3 expected, 4 found; version 1 expected, 2 found; "
        "entries 1 expected, 2 found; last_version 1 expected, 2 found; "
        "the entries' hash differs"
    ) in errors
    assert "FAILED: this database does not match" in errors
    assert errors.count("account ") == 1
