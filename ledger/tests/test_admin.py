import csv
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ledger import services
from ledger.models import LedgerEntry, TokenAccount
from ledger.tests.flow import buy


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def candidate(make_user):
    user = make_user(tokens=3, email="cand@example.com")
    buy(account=user.token_account, request_id="req-abc", generate=lambda: "q")
    return user


def test_entries_are_listed_newest_first_with_balance_after_and_actor(staff_client, candidate):
    response = staff_client.get(reverse("admin:ledger_ledgerentry_changelist"))
    assert response.status_code == 200
    rows = list(response.context["cl"].result_list)
    assert [e.kind for e in rows] == ["debit", "hold", "grant"]
    content = response.content.decode()
    assert "cand@example.com" in content
    assert "Export these entries as CSV" in content


def test_unfiltered_entries_page_runs_no_full_count(staff_client, candidate):
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(reverse("admin:ledger_ledgerentry_changelist"))
    assert response.status_code == 200
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert counts, "expected a capped count"
    for sql in counts:
        assert "LIMIT" in sql.upper(), f"unbounded count: {sql}"


def test_entries_are_searchable_by_email_and_request_id(staff_client, candidate, make_user):
    make_user(tokens=2, email="other@example.com")
    url = reverse("admin:ledger_ledgerentry_changelist")
    by_email = staff_client.get(url, {"q": "cand@example.com"}).context["cl"].result_list
    assert {e.account.email for e in by_email} == {"cand@example.com"}
    by_request = staff_client.get(url, {"q": "req-abc"}).context["cl"].result_list
    assert sorted(e.kind for e in by_request) == ["debit", "hold"]
    by_kind = staff_client.get(url, {"kind__exact": "grant"}).context["cl"].result_list
    assert len(by_kind) == 2


@pytest.mark.parametrize(
    "model", [LedgerEntry, TokenAccount, __import__("ledger.models").models.Hold]
)
def test_ledger_admin_is_read_only(staff_client, candidate, model):
    opts = model._meta
    obj = model.objects.first()
    add = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
    assert add.status_code == 403
    change = staff_client.get(
        reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    )
    assert change.status_code == 200
    assert 'name="_save"' not in change.content.decode()
    delete = staff_client.post(
        reverse(f"admin:{opts.app_label}_{opts.model_name}_delete", args=[obj.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()


def test_grant_action_requires_a_reason_and_records_the_staff_actor(
    staff_client, staff_user, candidate
):
    account = candidate.token_account
    url = reverse("admin:ledger_tokenaccount_changelist")
    data = {"action": "grant_tokens", "_selected_action": [account.pk], "apply": "1", "amount": "5"}
    missing_reason = staff_client.post(url, {**data, "reason": ""})
    assert missing_reason.status_code == 200
    assert "This field is required" in missing_reason.content.decode()
    assert account.entries.count() == 3
    done = staff_client.post(url, {**data, "reason": "Beta tester thanks"}, follow=True)
    assert done.status_code == 200
    entry = account.entries.latest("version")
    assert (entry.kind, entry.balance_delta, entry.actor, entry.source, entry.reason) == (
        "grant",
        5,
        staff_user,
        "admin",
        "Beta tester thanks",
    )
    account.refresh_from_db()
    assert account.balance == 7


def test_refund_action_refunds_a_debit_once(staff_client, staff_user, candidate):
    debit = candidate.token_account.entries.get(kind="debit")
    url = reverse("admin:ledger_ledgerentry_changelist")
    data = {
        "action": "refund_debits",
        "_selected_action": [debit.pk],
        "apply": "1",
        "reason": "Broken question",
    }
    staff_client.post(url, data)
    staff_client.post(url, data)
    refunds = LedgerEntry.objects.filter(kind="refund")
    assert refunds.count() == 1
    assert (refunds.get().corrects, refunds.get().actor) == (debit, staff_user)


def test_candidates_cannot_use_the_admin(client, candidate):
    client.force_login(candidate)
    response = client.get(reverse("admin:ledger_ledgerentry_changelist"))
    assert response.status_code == 302


def test_csv_export_streams_the_filtered_entries(staff_client, candidate, make_user):
    make_user(tokens=2, email="other@example.com")
    response = staff_client.get(
        reverse("admin:ledger_ledgerentry_export"),
        {"q": "cand@example.com", "kind__exact": "debit"},
    )
    assert response.status_code == 200
    assert response.streaming
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:5] == ["id", "created_at", "account_id", "account__email", "kind"]
    assert [(r[3], r[4]) for r in rows[1:]] == [("cand@example.com", "debit")]


def test_csv_export_reads_in_keyset_batches_every_entry_once(staff_client, candidate, monkeypatch):
    monkeypatch.setattr("ledger.admin.CSV_BATCH", 2)
    for _ in range(4):
        services.account_grant(
            account=candidate.token_account, amount=1, actor=None, source="system", reason="b"
        )
    response = staff_client.get(reverse("admin:ledger_ledgerentry_export"))
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    ids = [int(row[0]) for row in rows[1:]]
    expected = list(LedgerEntry.objects.order_by("-pk").values_list("pk", flat=True))
    assert ids == expected
    assert len(ids) == 7  # grant, hold, debit and four grants: four batches of two
