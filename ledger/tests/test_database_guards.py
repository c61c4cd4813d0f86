"""What the database itself refuses, whatever the Python code does."""

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from ledger.models import LedgerEntry, LedgerEntryImmutable, TokenAccount


def raw(sql: str, params=()) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.fixture
def account(make_user):
    return make_user(tokens=3).token_account


def test_raw_update_of_an_entry_is_refused(account):
    entry = account.entries.get()
    with pytest.raises(DatabaseError, match="append-only"):
        raw("UPDATE ledger_ledgerentry SET balance_delta = 1000 WHERE id = %s", [entry.pk])
    entry.refresh_from_db()
    assert entry.balance_delta == 3


def test_raw_delete_of_an_entry_is_refused(account):
    with pytest.raises(DatabaseError, match="append-only"):
        raw("DELETE FROM ledger_ledgerentry")
    assert LedgerEntry.objects.count() == 1


def test_the_model_refuses_updates_and_deletes(account):
    entry = account.entries.get()
    entry.reason = "edited"
    with pytest.raises(LedgerEntryImmutable):
        entry.save()
    with pytest.raises(LedgerEntryImmutable):
        entry.delete()
    with pytest.raises(LedgerEntryImmutable):
        LedgerEntry.objects.filter(pk=entry.pk).update(reason="edited")
    with pytest.raises(LedgerEntryImmutable):
        LedgerEntry.objects.all().delete()


def test_a_negative_balance_is_refused(account):
    with pytest.raises(IntegrityError, match="ledger_account"):
        raw("UPDATE ledger_tokenaccount SET balance = -1 WHERE id = %s", [account.pk])


def test_held_above_the_balance_is_refused(account):
    with pytest.raises(IntegrityError, match="ledger_account_balance_gte_held"):
        raw("UPDATE ledger_tokenaccount SET held = 4 WHERE id = %s", [account.pk])


def test_a_negative_held_is_refused(account):
    with pytest.raises(IntegrityError, match="ledger_account_held_gte_0"):
        raw("UPDATE ledger_tokenaccount SET held = -1 WHERE id = %s", [account.pk])
    account.refresh_from_db()
    assert (account.balance, account.held) == (3, 0)


def test_two_entries_with_one_version_are_refused(account):
    with (
        pytest.raises(IntegrityError, match="ledger_entry_version_unique_per_account"),
        transaction.atomic(),
    ):
        LedgerEntry.objects.create(
            account=account,
            kind=LedgerEntry.Kind.GRANT,
            balance_delta=1,
            balance_after=4,
            held_after=0,
            version=1,
            source=LedgerEntry.Source.SYSTEM,
        )


def test_deleting_a_user_keeps_the_ledger_history(make_user):
    user = make_user(tokens=2)
    account_id = user.token_account.pk
    user.delete()
    account = TokenAccount.objects.get(pk=account_id)
    assert account.user is None
    assert account.email.startswith("candidate")
    assert account.entries.count() == 1
    assert account.entries.get().actor_label == account.email
