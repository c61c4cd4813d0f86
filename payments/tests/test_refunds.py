"""Refunds and disputes take back only unspent tokens (the shortfall is recorded), in whatever
order Stripe's events arrive; a won dispute gives back what it took. Staff's admin actions, the
receipts page, and ledger_verify over all of it."""

import pytest
from django.core.management import call_command
from django.urls import reverse

from ledger.models import LedgerEntry
from ledger.selectors import account_problem_list
from payments.models import PaymentEvent, Purchase
from payments.tests.fake_stripe import charge_refunded, dispute, event
from payments.tests.flow import answer, balance, deliver, entries, purchase_open, spend

pytestmark = pytest.mark.django_db

Status = Purchase.Status
Dispute = Purchase.Dispute


@pytest.fixture
def paid(client, make_user, fake_stripe):
    """A candidate with no other tokens whose standard pack (60 tokens, 12.00 USD) has been
    paid and granted: (user, purchase, its charge on the fake Stripe)."""
    user = make_user(tokens=0)
    purchase = purchase_open(user, fake_stripe)
    session = fake_stripe.pay(purchase.checkout_session_id)
    assert deliver(client, event("checkout.session.completed", session)).status_code == 200
    assert balance(user) == 60
    purchase.refresh_from_db()
    return user, purchase, fake_stripe.charge_of(purchase.checkout_session_id)


def reload(purchase: Purchase) -> Purchase:
    purchase.refresh_from_db()
    return purchase


# --- refunds ---------------------------------------------------------------------------------


def test_a_full_refund_after_spending_takes_back_only_what_is_unspent(client, paid):
    user, purchase, charge = paid
    spend(user, 25)
    assert balance(user) == 35

    response = deliver(client, charge_refunded(charge, 1200))
    assert response.status_code == 200
    assert answer(response)["outcome"] == (
        "refunded 12.00 USD in all: 35 token(s) taken back, 25 already spent"
    )
    assert balance(user) == 0
    assert entries(purchase) == [("purchase", 60), ("reversal", -35)]
    purchase = reload(purchase)
    assert purchase.amount_refunded == 1200
    assert purchase.refund_tokens_owed == 60
    assert purchase.refund_tokens_taken == 35
    assert purchase.shortfall == 25
    reversal = LedgerEntry.objects.get(kind=LedgerEntry.Kind.REVERSAL)
    assert reversal.source == LedgerEntry.Source.PAYMENT
    assert reversal.balance_after == 0
    assert "Refund of 12.00 USD" in reversal.reason
    assert account_problem_list() == []


def test_a_refund_never_takes_tokens_a_pending_question_has_reserved(client, paid):
    from ledger import services as ledger

    user, purchase, charge = paid
    spend(user, 58)
    ledger.hold_reserve(
        account=user.token_account, request_id="in-flight", purpose="question:x", actor=None
    )
    deliver(client, charge_refunded(charge, 1200))
    account = user.token_account
    account.refresh_from_db()
    assert (account.balance, account.held) == (1, 1)  # the reserved question can still be paid
    assert reload(purchase).shortfall == 59
    assert account_problem_list() == []


def test_partial_refunds_are_cumulative_and_older_events_change_nothing(client, paid):
    user, purchase, charge = paid
    quarter = charge_refunded(charge, 300)
    half = charge_refunded(charge, 600)

    assert "15 token(s) taken back" in answer(deliver(client, quarter))["outcome"]
    assert balance(user) == 45
    assert "15 token(s) taken back" in answer(deliver(client, half))["outcome"]
    assert balance(user) == 30

    # The first event again (a replay), then an older one with another id: nothing changes.
    assert answer(deliver(client, quarter))["replay"] is True
    late = deliver(client, charge_refunded(charge, 300))
    assert answer(late)["outcome"] == "refunded 6.00 USD in all: 0 token(s) taken back"
    assert balance(user) == 30
    assert reload(purchase).amount_refunded == 600

    deliver(client, charge_refunded(charge, 1200))
    assert balance(user) == 0
    assert entries(purchase) == [
        ("purchase", 60),
        ("reversal", -15),
        ("reversal", -15),
        ("reversal", -30),
    ]
    purchase = reload(purchase)
    assert (purchase.refund_tokens_owed, purchase.refund_tokens_taken, purchase.shortfall) == (
        60,
        60,
        0,
    )
    assert account_problem_list() == []


def test_a_refund_of_a_few_cents_takes_back_a_whole_token(client, paid):
    user, purchase, charge = paid
    deliver(client, charge_refunded(charge, 1))
    assert balance(user) == 59
    deliver(client, charge_refunded(charge, 20))  # one token's worth in all: nothing more
    assert balance(user) == 59
    deliver(client, charge_refunded(charge, 21))
    assert balance(user) == 58
    assert reload(purchase).refund_tokens_owed == 2


def test_a_refund_delivered_before_the_payment_is_applied_when_the_payment_is(
    client, make_user, fake_stripe
):
    """charge.refunded can overtake checkout.session.completed: the purchase is found by the
    purchase id the charge carries, and the grant and the take-back happen together."""
    user = make_user(tokens=0)
    purchase = purchase_open(user, fake_stripe)
    session = fake_stripe.pay(purchase.checkout_session_id)
    charge = fake_stripe.charge_of(purchase.checkout_session_id)

    refund = deliver(client, charge_refunded(charge, 1200))
    assert refund.status_code == 200
    assert balance(user) == 0
    purchase = reload(purchase)
    assert purchase.status == Status.OPEN
    assert purchase.amount_refunded == 1200  # kept for when the payment is processed

    completed = deliver(client, event("checkout.session.completed", session))
    assert completed.status_code == 200
    assert balance(user) == 0
    assert entries(purchase) == [("purchase", 60), ("reversal", -60)]
    purchase = reload(purchase)
    assert purchase.status == Status.PAID
    assert (purchase.refund_tokens_taken, purchase.shortfall) == (60, 0)
    assert account_problem_list() == []


def test_a_refund_of_a_charge_not_known_yet_is_retried_until_the_payment_is_processed(
    client, make_user, fake_stripe
):
    user = make_user(tokens=0)
    purchase = purchase_open(user, fake_stripe)
    session = fake_stripe.pay(purchase.checkout_session_id)
    charge = fake_stripe.charge_of(purchase.checkout_session_id) | {"metadata": {}}
    refund = charge_refunded(charge, 600)

    assert deliver(client, refund).status_code == 500  # Stripe retries
    deliver(client, event("checkout.session.completed", session))
    assert balance(user) == 60
    retried = deliver(client, refund)
    assert retried.status_code == 200
    assert balance(user) == 30
    assert PaymentEvent.objects.get(pk=refund["id"]).attempts == 2


# --- disputes --------------------------------------------------------------------------------


def test_a_dispute_holds_back_unspent_tokens_and_pauses_purchases_until_won(client, paid):
    user, purchase, charge = paid
    client.force_login(user)
    spend(user, 10)

    opened = deliver(client, dispute("charge.dispute.created", charge, "needs_response"))
    assert answer(opened)["outcome"] == "dispute opened: 50 token(s) held back"
    assert balance(user) == 0
    purchase = reload(purchase)
    assert purchase.dispute_status == Dispute.OPEN
    assert (purchase.dispute_tokens_taken, purchase.shortfall) == (50, 10)

    refused = client.post(reverse("payments:buy"), {"pack": "starter"})
    assert refused.status_code == 403
    assert b"A payment of yours is disputed" in refused.content
    assert not Purchase.objects.filter(pack_code="starter").exists()
    # The same dispute told again takes nothing more.
    deliver(client, dispute("charge.dispute.created", charge, "needs_response"))
    assert balance(user) == 0

    won = deliver(client, dispute("charge.dispute.closed", charge, "won"))
    assert answer(won)["outcome"] == "dispute won"
    assert balance(user) == 50
    assert entries(purchase) == [("purchase", 60), ("reversal", -50), ("reinstate", 50)]
    assert reload(purchase).dispute_status == Dispute.WON
    # Closed again (a retry, another event id): nothing more is given back.
    again = deliver(client, dispute("charge.dispute.closed", charge, "won"))
    assert "already closed" in answer(again)["outcome"]
    assert balance(user) == 50

    assert client.post(reverse("payments:buy"), {"pack": "starter"}).status_code == 303
    assert account_problem_list() == []


def test_a_lost_dispute_gives_nothing_back(client, paid):
    user, purchase, charge = paid
    client.force_login(user)
    deliver(client, dispute("charge.dispute.created", charge, "needs_response"))
    assert balance(user) == 0
    deliver(client, dispute("charge.dispute.closed", charge, "lost"))
    assert balance(user) == 0
    assert entries(purchase) == [("purchase", 60), ("reversal", -60)]
    assert reload(purchase).dispute_status == Dispute.LOST
    assert client.post(reverse("payments:buy"), {"pack": "starter"}).status_code == 303
    assert account_problem_list() == []


def test_a_dispute_lost_before_it_was_seen_open_still_takes_back(client, paid):
    user, purchase, charge = paid
    closed = dispute("charge.dispute.closed", charge, "lost")
    opened = dispute("charge.dispute.created", charge, "needs_response")
    deliver(client, closed)
    assert balance(user) == 0
    deliver(client, opened)  # late: changes nothing
    assert balance(user) == 0
    assert entries(purchase) == [("purchase", 60), ("reversal", -60)]
    assert reload(purchase).dispute_status == Dispute.LOST
    assert account_problem_list() == []


def test_a_dispute_won_before_it_was_seen_open_changes_nothing(client, paid):
    user, purchase, charge = paid
    deliver(client, dispute("charge.dispute.closed", charge, "won"))
    deliver(client, dispute("charge.dispute.created", charge, "needs_response"))
    assert balance(user) == 60
    assert entries(purchase) == [("purchase", 60)]
    assert not Purchase.objects.filter(dispute_status=Dispute.OPEN).exists()


def test_a_dispute_delivered_before_the_payment_is_retried_until_it_is_granted(
    client, make_user, fake_stripe
):
    user = make_user(tokens=0)
    client.force_login(user)
    purchase = purchase_open(user, fake_stripe)
    session = fake_stripe.pay(purchase.checkout_session_id)
    charge = fake_stripe.charge_of(purchase.checkout_session_id)
    opened = dispute("charge.dispute.created", charge, "needs_response")
    # A dispute names its charge and payment, not the purchase: not matched yet, retried.
    assert deliver(client, opened).status_code == 500
    assert reload(purchase).dispute_status == Dispute.NONE

    deliver(client, event("checkout.session.completed", session))
    assert balance(user) == 60
    assert deliver(client, opened).status_code == 200  # Stripe's retry
    assert balance(user) == 0
    assert reload(purchase).dispute_status == Dispute.OPEN
    assert client.post(reverse("payments:buy"), {"pack": "starter"}).status_code == 403
    assert entries(purchase) == [("purchase", 60), ("reversal", -60)]
    deliver(client, dispute("charge.dispute.closed", charge, "won"))
    assert balance(user) == 60
    assert account_problem_list() == []


def test_a_won_dispute_gives_back_what_it_took_even_after_spending_since(client, make_user, paid):
    """Tokens spent between the dispute and its end (from other grants) do not change what is
    given back: exactly what was taken."""
    from ledger import services as ledger

    user, purchase, charge = paid
    spend(user, 20)
    deliver(client, dispute("charge.dispute.created", charge, "needs_response"))
    assert balance(user) == 0
    ledger.account_grant(
        account=user.token_account,
        amount=5,
        actor=None,
        source=LedgerEntry.Source.SYSTEM,
        reason="goodwill",
    )
    spend(user, 5, prefix="later")
    deliver(client, dispute("charge.dispute.closed", charge, "warning_closed"))
    assert balance(user) == 40
    assert entries(purchase) == [("purchase", 60), ("reversal", -40), ("reinstate", 40)]


# --- staff: the admin's actions ------------------------------------------------------------------


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def admin_action(staff_client, model: str, action: str, *pks):
    return staff_client.post(
        reverse(f"admin:payments_{model}_changelist"),
        {"action": action, "_selected_action": [str(pk) for pk in pks]},
        follow=True,
    )


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_staff_refund_the_unspent_tokens_and_stripe_refunds_their_share(
    staff_client, staff_user, paid, fake_stripe
):
    user, purchase, _charge = paid
    spend(user, 15)

    response = admin_action(staff_client, "purchase", "refund_unspent", purchase.pk)
    assert response.status_code == 200
    [said] = messages_of(response)
    assert said == f"{purchase.pk}: 9.00 USD refunded in all, 45 token(s) taken back"

    [refund] = fake_stripe.refunds
    assert refund["amount"] == 900  # 45 of 60 tokens
    [request] = [r for r in fake_stripe.requests if r.path == "/v1/refunds"]
    assert request.params["payment_intent"] == purchase.payment_intent_id
    assert request.headers["idempotency-key"] == f"mockroom-refund-{purchase.pk}-900"
    assert balance(user) == 0
    reversal = LedgerEntry.objects.get(kind=LedgerEntry.Kind.REVERSAL)
    assert (reversal.balance_delta, reversal.actor, reversal.source) == (
        -45,
        staff_user,
        LedgerEntry.Source.ADMIN,
    )
    purchase = reload(purchase)
    assert (purchase.amount_refunded, purchase.refund_tokens_taken, purchase.shortfall) == (
        900,
        45,
        0,
    )

    # Stripe's charge.refunded for that refund changes nothing: refunds are cumulative.
    stripe_says = fake_stripe.charge_of(purchase.checkout_session_id)
    assert stripe_says["amount_refunded"] == 900
    deliver(staff_client, charge_refunded(stripe_says, 900))
    assert balance(user) == 0
    assert entries(purchase) == [("purchase", 60), ("reversal", -45)]

    # Nothing unspent is left: a second refund is refused and Stripe is not asked.
    again = admin_action(staff_client, "purchase", "refund_unspent", purchase.pk)
    assert "has no unspent tokens to refund" in messages_of(again)[0]
    assert len(fake_stripe.refunds) == 1
    assert account_problem_list() == []


def test_staff_refund_of_an_untouched_pack_refunds_it_all(staff_client, paid, fake_stripe):
    user, purchase, _charge = paid
    admin_action(staff_client, "purchase", "refund_unspent", purchase.pk)
    assert fake_stripe.refunds[0]["amount"] == 1200
    assert balance(user) == 0
    assert reload(purchase).amount_refunded == 1200


def test_staff_refund_when_stripe_fails_changes_nothing(staff_client, paid, fake_stripe):
    user, purchase, _charge = paid
    fake_stripe.fail_next(1, status=500)
    response = admin_action(staff_client, "purchase", "refund_unspent", purchase.pk)
    assert "APIError" in messages_of(response)[0]
    assert balance(user) == 60
    assert not fake_stripe.refunds


def test_staff_refund_still_takes_the_tokens_when_the_charge_cannot_be_read(
    staff_client, paid, fake_stripe
):
    user, purchase, _charge = paid
    real_handle = fake_stripe.handle

    def charges_down(method, path, params, headers):
        if path.startswith("/v1/charges/"):
            return 503, {"error": {"type": "api_error", "message": "down"}}
        return real_handle(method, path, params, headers)

    fake_stripe.handle = charges_down
    admin_action(staff_client, "purchase", "refund_unspent", purchase.pk)
    assert fake_stripe.refunds[0]["amount"] == 1200
    assert balance(user) == 0
    assert reload(purchase).amount_refunded == 1200


def test_staff_without_the_grant_permission_cannot_refund(client, paid, fake_stripe):
    from accounts.models import User

    clerk = User.objects.create_user(email="clerk@example.com", password="x", is_staff=True)
    from django.contrib.auth.models import Permission

    clerk.user_permissions.add(Permission.objects.get(codename="view_purchase"))
    client.force_login(clerk)
    user, purchase, _charge = paid
    response = admin_action(client, "purchase", "refund_unspent", purchase.pk)
    assert messages_of(response) == ["You may not refund."]
    assert not fake_stripe.refunds
    assert balance(user) == 60


def test_staff_cannot_refund_a_purchase_that_is_not_paid(staff_client, make_user, fake_stripe):
    purchase = purchase_open(make_user(), fake_stripe)
    response = admin_action(staff_client, "purchase", "refund_unspent", purchase.pk)
    assert messages_of(response) == [f"{purchase.pk}: Purchase {purchase.pk} is open, not paid."]
    assert not fake_stripe.refunds


def test_staff_recheck_grants_a_paid_purchase_whose_webhook_never_came(
    staff_client, make_user, fake_stripe
):
    user = make_user(tokens=0)
    purchase = purchase_open(user, fake_stripe)
    fake_stripe.pay(purchase.checkout_session_id)

    response = admin_action(staff_client, "purchase", "recheck", purchase.pk)
    assert messages_of(response) == [f"{purchase.pk}: Paid"]
    assert balance(user) == 60
    purchase = reload(purchase)
    assert purchase.status == Status.PAID
    assert purchase.receipt_url.startswith("https://pay.stripe.example/receipts/")
    # Again: still one grant.
    admin_action(staff_client, "purchase", "recheck", purchase.pk)
    assert entries(purchase) == [("purchase", 60)]


def test_staff_recheck_of_an_unpaid_purchase_leaves_it_open(staff_client, make_user, fake_stripe):
    user = make_user(tokens=0)
    purchase = purchase_open(user, fake_stripe)
    response = admin_action(staff_client, "purchase", "recheck", purchase.pk)
    assert messages_of(response) == [f"{purchase.pk}: Checkout open"]
    assert balance(user) == 0


def test_staff_reprocess_an_event_whose_processing_failed(
    staff_client, make_user, fake_stripe, monkeypatch
):
    from ledger import services as ledger

    user = make_user(tokens=0)
    purchase = purchase_open(user, fake_stripe)
    session = fake_stripe.pay(purchase.checkout_session_id)
    real_grant = ledger.purchase_grant
    monkeypatch.setattr(ledger, "purchase_grant", lambda **kw: 1 / 0)
    payload = event("checkout.session.completed", session)
    assert deliver(staff_client, payload).status_code == 500

    failed_again = admin_action(staff_client, "paymentevent", "reprocess", payload["id"])
    assert "failed again" in messages_of(failed_again)[0]
    assert PaymentEvent.objects.get().attempts == 2

    monkeypatch.setattr(ledger, "purchase_grant", real_grant)
    response = admin_action(staff_client, "paymentevent", "reprocess", payload["id"])
    assert messages_of(response) == [f"{payload['id']}: granted 60 token(s)"]
    assert balance(user) == 60
    again = admin_action(staff_client, "paymentevent", "reprocess", payload["id"])
    assert messages_of(again) == [f"{payload['id']}: granted 60 token(s) (already processed)"]
    assert entries(purchase) == [("purchase", 60)]


def test_the_admin_pages_show_a_purchase_and_its_entries(staff_client, paid):
    user, purchase, charge = paid
    deliver(staff_client, charge_refunded(charge, 600))
    listing = staff_client.get(reverse("admin:payments_purchase_changelist"))
    assert listing.status_code == 200
    assert user.email in listing.content.decode()
    page = staff_client.get(reverse("admin:payments_purchase_change", args=[purchase.pk]))
    assert page.status_code == 200
    content = page.content.decode()
    assert "Purchase +60 token(s), balance after 60" in content
    assert "Taken back -30 token(s), balance after 30" in content
    events = staff_client.get(reverse("admin:payments_paymentevent_changelist"))
    assert events.status_code == 200
    assert "charge.refunded" in events.content.decode()
    # Read-only: no adding, no editing, no deleting.
    assert staff_client.get(reverse("admin:payments_purchase_add")).status_code == 403
    deleted = staff_client.post(
        reverse("admin:payments_purchase_delete", args=[purchase.pk]), {"post": "yes"}
    )
    assert deleted.status_code == 403
    assert Purchase.objects.filter(pk=purchase.pk).exists()


# --- what the candidate sees, and what ledger_verify proves --------------------------------------


def test_the_receipts_page_lists_the_purchase_entries_with_the_receipt(client, paid):
    user, purchase, charge = paid
    deliver(client, charge_refunded(charge, 600))
    client.force_login(user)
    page = client.get(reverse("ledger:entries"))
    assert page.status_code == 200
    content = page.content.decode()
    assert content.count('class="entry-purchase"') == 1
    assert content.count('class="entry-reversal"') == 1
    assert "Taken back" in content
    assert f'href="{reload(purchase).receipt_url}">Payment receipt</a>' in content
    assert "Standard: 60 tokens for 12.00 USD" in content
    assert "+60" in content
    assert "-30" in content


def test_ledger_verify_is_clean_after_purchases_refunds_and_disputes(
    client, make_user, fake_stripe, capsys
):
    users = []
    for index in range(3):
        user = make_user(tokens=1)
        purchase = purchase_open(user, fake_stripe)
        session = fake_stripe.pay(purchase.checkout_session_id)
        deliver(client, event("checkout.session.completed", session))
        spend(user, 10 * index)
        users.append((user, fake_stripe.charge_of(purchase.checkout_session_id)))
    deliver(client, charge_refunded(users[0][1], 1200))
    deliver(client, charge_refunded(users[1][1], 500))
    deliver(client, dispute("charge.dispute.created", users[2][1], "needs_response"))
    deliver(client, dispute("charge.dispute.closed", users[2][1], "won"))
    deliver(client, dispute("charge.dispute.created", users[1][1], "needs_response"))

    call_command("ledger_verify")
    assert "OK: 3 account(s) reconcile." in capsys.readouterr().out


@pytest.mark.parametrize(
    "broken",
    [
        [("reversal", -70)],  # more taken back than the pack granted
        [("reinstate", 10)],  # more given back than was taken
        [("purchase", 60)],  # a second grant (written around the unique constraint: below)
    ],
)
def test_ledger_verify_reports_a_purchase_whose_entries_break_the_rule(
    client, make_user, fake_stripe, capsys, broken
):
    from django.db import connection

    from accounts.models import User

    ok = make_user(tokens=0, email="ok@example.com")
    purchase_open(ok, fake_stripe)
    user = make_user(tokens=100, email="broken@example.com")
    purchase = purchase_open(user, fake_stripe)
    session = fake_stripe.pay(purchase.checkout_session_id)
    deliver(client, event("checkout.session.completed", session))

    account = User.objects.get(pk=user.pk).token_account
    if broken[0][0] == "purchase":
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX ledger_entry_one_grant_per_purchase")
    for kind, delta in broken:
        # Written directly, as a bug or a hand-made fix would: the account's own numbers stay
        # consistent, only the purchase's rule is broken.
        account.balance += delta
        account.version += 1
        LedgerEntry.objects.create(
            account=account,
            kind=kind,
            balance_delta=delta,
            balance_after=account.balance,
            held_after=account.held,
            version=account.version,
            source=LedgerEntry.Source.PAYMENT,
            reason="written around the services",
            purchase=purchase.pk,
        )
        account.save(update_fields=["balance", "version"])

    with pytest.raises(SystemExit) as exited:
        call_command("ledger_verify")
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "broken@example.com" in err
    assert f"purchase {purchase.pk}" in err
    assert "must be 0 to the grant" in err
    assert "ok@example.com" not in err
    assert "1 of 2 account(s)" in err


def test_a_candidate_who_bought_tokens_can_delete_their_account(client, paid):
    """The purchase and its ledger entries stay (payment records); a refund told later still
    finds them."""
    from accounts.services import user_delete

    user, purchase, charge = paid
    account = user.token_account
    user_delete(user=user)

    purchase = reload(purchase)
    assert purchase.user is None
    assert entries(purchase) == [("purchase", 60)]
    deliver(client, charge_refunded(charge, 1200))
    account.refresh_from_db()
    assert account.balance == 0
    assert entries(purchase) == [("purchase", 60), ("reversal", -60)]
    assert account_problem_list() == []


def test_staff_grant_a_purchase_held_for_review_once(
    staff_client, staff_user, make_user, fake_stripe, client
):
    user = make_user(tokens=0)
    purchase = purchase_open(user, fake_stripe)
    session = fake_stripe.pay(purchase.checkout_session_id)
    deliver(client, event("checkout.session.completed", session | {"amount_total": 100}))
    assert reload(purchase).status == Status.REVIEW
    assert balance(user) == 0

    response = admin_action(staff_client, "purchase", "grant_reviewed", purchase.pk)
    assert messages_of(response) == [f"{purchase.pk}: 60 token(s) granted"]
    assert balance(user) == 60
    assert entries(purchase) == [("purchase", 60)]
    grant = LedgerEntry.objects.get(purchase=purchase.pk)
    assert (grant.kind, grant.actor, grant.source) == (
        LedgerEntry.Kind.PURCHASE,
        staff_user,
        LedgerEntry.Source.ADMIN,
    )
    assert reload(purchase).status == Status.PAID
    # Again (a second click, or a paid purchase): refused, nothing granted.
    again = admin_action(staff_client, "purchase", "grant_reviewed", purchase.pk)
    assert messages_of(again) == [f"Purchase {purchase.pk} is not waiting for a review."]
    assert balance(user) == 60
    assert account_problem_list() == []
