"""Stripe's webhook: what it refuses (400, nothing stored), what it stores, and how each event
changes a purchase, against the fake Stripe API on loopback."""

import json
import time

import pytest
import stripe
from django.urls import reverse

from ledger import services as ledger
from ledger.models import LedgerEntry
from ledger.selectors import account_problem_list
from payments.models import PaymentEvent, Purchase
from payments.tests.fake_stripe import WEBHOOK_SECRET, charge_refunded, event, signed
from payments.tests.flow import WEBHOOK, answer, balance, deliver, entries, purchase_open

pytestmark = pytest.mark.django_db

Status = Purchase.Status


@pytest.fixture
def bought(make_user, fake_stripe):
    """A candidate with 2 tokens who has just paid for the standard pack (60 tokens) on
    Stripe's page: (user, purchase, the completed session)."""
    user = make_user(tokens=2)
    purchase = purchase_open(user, fake_stripe)
    session = fake_stripe.pay(purchase.checkout_session_id)
    return user, purchase, session


def nothing_stored(user, purchase) -> None:
    assert not PaymentEvent.objects.exists()
    assert entries(purchase) == []
    assert balance(user) == 2
    purchase.refresh_from_db()
    assert purchase.status == Status.OPEN


# --- what is refused before anything is stored ----------------------------------------------


def test_a_body_changed_after_signing_is_refused(client, bought):
    user, purchase, session = bought
    body, header = signed(event("checkout.session.completed", session))
    forged = body.replace(b'"amount_total": 1200', b'"amount_total": 12000')
    assert forged != body
    response = client.post(
        WEBHOOK, forged, content_type="application/json", headers={"stripe-signature": header}
    )
    assert response.status_code == 400
    assert "Bad signature" in answer(response)["error"]
    nothing_stored(user, purchase)


def test_a_made_up_signature_is_refused(client, bought):
    user, purchase, session = bought
    body = json.dumps(event("checkout.session.completed", session)).encode()
    header = f"t={int(time.time())},v1={'ab' * 32}"
    response = client.post(
        WEBHOOK, body, content_type="application/json", headers={"stripe-signature": header}
    )
    assert response.status_code == 400
    nothing_stored(user, purchase)


def test_a_body_signed_with_another_secret_is_refused(client, bought):
    user, purchase, session = bought
    response = deliver(
        client, event("checkout.session.completed", session), secret="whsec_someone_else"
    )
    assert response.status_code == 400
    nothing_stored(user, purchase)


@pytest.mark.parametrize("age", [301, 3600])
def test_a_stale_signature_is_refused(client, bought, age):
    """A delivery captured and replayed later: its signed timestamp is too old."""
    user, purchase, session = bought
    response = deliver(
        client,
        event("checkout.session.completed", session),
        timestamp=int(time.time()) - age,
    )
    assert response.status_code == 400
    assert "Bad signature" in answer(response)["error"]
    nothing_stored(user, purchase)


def test_a_signature_within_the_tolerance_is_accepted(client, bought):
    user, _purchase, session = bought
    response = deliver(
        client, event("checkout.session.completed", session), timestamp=int(time.time()) - 200
    )
    assert response.status_code == 200
    assert balance(user) == 62


def test_a_delivery_without_a_signature_header_is_refused(client, bought):
    user, purchase, session = bought
    body = json.dumps(event("checkout.session.completed", session))
    response = client.post(WEBHOOK, body, content_type="application/json")
    assert response.status_code == 400
    nothing_stored(user, purchase)


@pytest.mark.parametrize(
    "text",
    [
        "this is not json",
        "[1, 2, 3]",
        '{"id": "evt_1", "type": "checkout.session.completed"}',
        '{"id": "", "type": "x", "data": {"object": {}}}',
        '{"id": "evt_2", "type": "x", "data": {"object": "not an object"}}',
    ],
)
def test_a_signed_body_that_is_not_an_event_is_refused(client, bought, text):
    user, purchase, _session = bought
    header = stripe.WebhookSignature.generate_signature_header(text, WEBHOOK_SECRET)
    response = client.post(
        WEBHOOK, text, content_type="application/json", headers={"stripe-signature": header}
    )
    assert response.status_code == 400
    nothing_stored(user, purchase)


def test_a_body_that_is_not_utf8_is_refused(client, bought):
    user, purchase, _session = bought
    response = client.post(
        WEBHOOK,
        b"\xff\xfe\x00",
        content_type="application/json",
        headers={"stripe-signature": f"t={int(time.time())},v1={'00' * 32}"},
    )
    assert response.status_code == 400
    nothing_stored(user, purchase)


def test_the_webhook_takes_only_post(client, fake_stripe):
    assert client.get(WEBHOOK).status_code == 405
    assert not PaymentEvent.objects.exists()


# --- stored, processed once --------------------------------------------------------------------


def test_a_completed_checkout_grants_the_pack_and_a_replay_changes_nothing(
    client, bought, fake_stripe
):
    user, purchase, session = bought
    payload = event("checkout.session.completed", session)
    first = deliver(client, payload)
    assert first.status_code == 200
    assert answer(first) == {
        "received": payload["id"],
        "outcome": "granted 60 token(s)",
        "replay": False,
    }
    assert balance(user) == 62

    again = deliver(client, payload)
    assert again.status_code == 200
    assert answer(again) == {
        "received": payload["id"],
        "outcome": "granted 60 token(s)",
        "replay": True,
    }
    assert balance(user) == 62
    assert entries(purchase) == [("purchase", 60)]
    stored = PaymentEvent.objects.get()
    assert stored.pk == payload["id"]
    assert stored.processed_at is not None
    assert stored.attempts == 1
    assert stored.purchase == purchase
    purchase.refresh_from_db()
    assert purchase.status == Status.PAID
    assert purchase.paid_at is not None
    assert purchase.payment_intent_id == session["payment_intent"]
    assert account_problem_list() == []


def test_another_event_for_the_same_session_grants_nothing_more(client, bought):
    user, purchase, session = bought
    assert deliver(client, event("checkout.session.completed", session)).status_code == 200
    later = deliver(client, event("checkout.session.completed", session))
    assert later.status_code == 200
    assert answer(later)["outcome"] == "already paid"
    assert answer(later)["replay"] is False
    assert balance(user) == 62
    assert entries(purchase) == [("purchase", 60)]


def test_an_event_type_not_handled_is_stored_and_answered_200(client, bought):
    user, _purchase, _session = bought
    payload = event("customer.created", {"id": "cus_1", "object": "customer"})
    response = deliver(client, payload)
    assert response.status_code == 200
    assert answer(response)["outcome"] == "not handled: stored"
    stored = PaymentEvent.objects.get()
    assert (stored.pk, stored.type) == (payload["id"], "customer.created")
    assert stored.processed_at is not None
    assert stored.payload == payload
    assert balance(user) == 2


@pytest.mark.parametrize(
    "reference", ["not-a-purchase-id", "", "7a0e6f3c-5d0b-4a57-9d53-0e3c2c1b8f11"]
)
def test_a_session_of_no_purchase_here_is_answered_as_not_ours(client, fake_stripe, reference):
    """Another app's Checkout Session on the same Stripe account: not an error to retry."""
    other = {
        "id": "cs_elsewhere",
        "object": "checkout.session",
        "status": "complete",
        "payment_status": "paid",
        "mode": "payment",
        "amount_total": 1200,
        "currency": "usd",
        "client_reference_id": reference,
        "metadata": {},
    }
    response = deliver(client, event("checkout.session.completed", other))
    assert response.status_code == 200
    assert "not ours" in answer(response)["outcome"]
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.PURCHASE).exists()


# --- a processing failure: 500, and Stripe's retry grants ------------------------------------


def test_a_failure_while_processing_answers_500_and_the_retry_grants(client, bought, monkeypatch):
    user, purchase, session = bought
    real_grant = ledger.purchase_grant
    calls = []

    def grant_failing_once(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise RuntimeError("the database went away")
        return real_grant(**kwargs)

    monkeypatch.setattr(ledger, "purchase_grant", grant_failing_once)
    payload = event("checkout.session.completed", session)
    body, header = signed(payload)

    failed = client.post(
        WEBHOOK, body, content_type="application/json", headers={"stripe-signature": header}
    )
    assert failed.status_code == 500
    stored = PaymentEvent.objects.get()
    assert stored.processed_at is None
    assert stored.attempts == 1
    assert "RuntimeError: the database went away" in stored.last_error
    assert entries(purchase) == []
    assert balance(user) == 2
    purchase.refresh_from_db()
    assert purchase.status == Status.OPEN  # nothing the failed attempt did was kept

    # Stripe delivers the same event again (the same body and signature, seconds later).
    retried = client.post(
        WEBHOOK, body, content_type="application/json", headers={"stripe-signature": header}
    )
    assert retried.status_code == 200
    assert answer(retried)["replay"] is False
    assert balance(user) == 62
    assert entries(purchase) == [("purchase", 60)]
    stored.refresh_from_db()
    assert stored.processed_at is not None
    assert stored.attempts == 2
    assert stored.last_error == ""
    assert len(calls) == 2


# --- what is paid must be what was sold ------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"amount_total": 100}, "amount 100 (sold for 1200)"),
        ({"currency": "eur"}, "currency 'eur' (sold in 'usd')"),
        ({"mode": "subscription"}, "mode 'subscription'"),
    ],
)
def test_a_payment_that_does_not_match_the_purchase_is_not_granted(client, bought, change, says):
    user, purchase, session = bought
    response = deliver(client, event("checkout.session.completed", session | change))
    assert response.status_code == 200
    assert "not granted" in answer(response)["outcome"]
    assert balance(user) == 2
    assert entries(purchase) == []
    purchase.refresh_from_db()
    assert purchase.status == Status.REVIEW
    assert says in purchase.problem
    # The true session, later, does not grant it either: staff look first.
    deliver(client, event("checkout.session.completed", session))
    assert balance(user) == 2
    purchase.refresh_from_db()
    assert purchase.status == Status.REVIEW


def test_a_session_claiming_another_purchase_is_not_settled_on_this_one(
    client, make_user, fake_stripe
):
    """A session names the purchase by client_reference_id; a purchase that already has its own
    session refuses another session's payment."""
    user = make_user(tokens=0)
    mine = purchase_open(user, fake_stripe)
    other = purchase_open(user, fake_stripe, pack="starter")
    paid_other = fake_stripe.pay(other.checkout_session_id)
    forged = paid_other | {
        "client_reference_id": str(mine.pk),
        "metadata": {"purchase_id": str(mine.pk)},
        "amount_total": 1200,
    }
    response = deliver(client, event("checkout.session.completed", forged))
    assert response.status_code == 200
    assert "is not this purchase's" in answer(response)["outcome"]
    assert balance(user) == 0
    mine.refresh_from_db()
    assert mine.status == Status.OPEN


# --- delayed payment methods, failures, expiry -------------------------------------------------


def test_a_delayed_payment_is_processing_then_granted_when_it_succeeds(
    client, make_user, fake_stripe
):
    user = make_user(tokens=2)
    client.force_login(user)
    purchase = purchase_open(user, fake_stripe)
    session = fake_stripe.pay(purchase.checkout_session_id, delayed=True)
    response = deliver(client, event("checkout.session.completed", session))
    assert answer(response)["outcome"] == "payment processing"
    purchase.refresh_from_db()
    assert purchase.status == Status.PROCESSING
    assert balance(user) == 2

    page = client.get("/tokens/buy/done/", {"session_id": session["id"]})
    assert page.status_code == 200
    assert b"Payment processing." in page.content
    assert f"/tokens/buy/done/{purchase.pk}/status/?poll=1".encode() in page.content

    settled = fake_stripe.settle(session["id"])
    response = deliver(client, event("checkout.session.async_payment_succeeded", settled))
    assert answer(response)["outcome"] == "granted 60 token(s)"
    assert balance(user) == 62
    purchase.refresh_from_db()
    assert purchase.status == Status.PAID

    poll = client.get(
        f"/tokens/buy/done/{purchase.pk}/status/", {"poll": "3"}, headers={"hx-request": "true"}
    )
    assert b"+60 tokens" in poll.content
    assert b"hx-get" not in poll.content  # the poll stops
    assert b"hx-swap-oob" in poll.content  # the badge, with the new balance
    assert b"62 tokens</span>" in poll.content.split(b"hx-swap-oob")[1]
    assert entries(purchase) == [("purchase", 60)]


def test_the_success_page_stops_polling_after_its_limit(client, make_user, fake_stripe):
    user = make_user()
    client.force_login(user)
    purchase = purchase_open(user, fake_stripe)
    session = fake_stripe.pay(purchase.checkout_session_id, delayed=True)
    deliver(client, event("checkout.session.completed", session))
    last = client.get(f"/tokens/buy/done/{purchase.pk}/status/", {"poll": "30"})
    assert b"hx-get" not in last.content
    assert b"you can leave this page" in last.content


def test_a_delayed_payment_that_fails_grants_nothing(client, make_user, fake_stripe):
    user = make_user(tokens=2)
    purchase = purchase_open(user, fake_stripe)
    session = fake_stripe.pay(purchase.checkout_session_id, delayed=True)
    deliver(client, event("checkout.session.completed", session))
    response = deliver(client, event("checkout.session.async_payment_failed", session))
    assert answer(response)["outcome"] == "payment failed: nothing granted"
    purchase.refresh_from_db()
    assert purchase.status == Status.FAILED
    # A failure reported again, or late, changes nothing.
    again = deliver(client, event("checkout.session.async_payment_failed", session))
    assert answer(again)["outcome"] == "payment failed, purchase already failed"
    assert balance(user) == 2
    assert entries(purchase) == []


def test_a_failure_reported_after_the_payment_was_granted_takes_nothing(client, bought):
    user, _purchase, session = bought
    deliver(client, event("checkout.session.completed", session))
    response = deliver(client, event("checkout.session.async_payment_failed", session))
    assert answer(response)["outcome"] == "payment failed, purchase already paid"
    assert balance(user) == 62


def test_an_expired_checkout_frees_the_pack_for_a_new_purchase(client, make_user, fake_stripe):
    user = make_user(tokens=2)
    client.force_login(user)
    purchase = purchase_open(user, fake_stripe)
    session = fake_stripe.session_for(purchase.pk) | {"status": "expired"}
    response = deliver(client, event("checkout.session.expired", session))
    assert answer(response)["outcome"] == "checkout expired"
    purchase.refresh_from_db()
    assert purchase.status == Status.EXPIRED
    assert balance(user) == 2

    again = client.post("/tokens/buy/", {"pack": "standard"})
    assert again.status_code == 303
    assert Purchase.objects.filter(user=user).count() == 2
    assert len(fake_stripe.created()) == 2


def test_a_payment_after_the_checkout_expired_is_still_granted(client, bought):
    """Money taken is tokens owed, whatever was said of the checkout before."""
    user, purchase, session = bought
    deliver(client, event("checkout.session.expired", session | {"status": "expired"}))
    deliver(client, event("checkout.session.completed", session))
    assert balance(user) == 62
    purchase.refresh_from_db()
    assert purchase.status == Status.PAID


# --- charges no purchase matches -----------------------------------------------------------------


def stranger_charge() -> dict:
    return {
        "id": "ch_stranger",
        "object": "charge",
        "amount": 1200,
        "amount_refunded": 0,
        "currency": "usd",
        "payment_intent": "pi_stranger",
        "metadata": {},
    }


def test_a_refund_of_a_charge_not_matched_yet_is_retried(client, fake_stripe):
    payload = charge_refunded(stranger_charge(), 1200)
    response = deliver(client, payload)
    assert response.status_code == 500
    stored = PaymentEvent.objects.get()
    assert stored.processed_at is None
    assert "no purchase matches charge ch_stranger yet" in stored.last_error


def test_a_refund_of_a_charge_no_purchase_matches_after_a_day_is_not_ours(client, fake_stripe):
    payload = charge_refunded(stranger_charge(), 1200)
    payload["created"] = int(time.time()) - 2 * 24 * 3600
    response = deliver(client, payload)
    assert response.status_code == 200
    assert answer(response)["outcome"] == "no purchase matches this charge: not ours"
    assert PaymentEvent.objects.get().processed_at is not None
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REVERSAL).exists()


def test_a_charge_naming_a_purchase_id_that_is_not_a_uuid_is_not_an_error(client, fake_stripe):
    charge = stranger_charge() | {"metadata": {"purchase_id": "not-a-uuid"}}
    payload = charge_refunded(charge, 1200)
    payload["created"] = int(time.time()) - 2 * 24 * 3600
    response = deliver(client, payload)
    assert response.status_code == 200
    assert "not ours" in answer(response)["outcome"]


def test_without_a_provider_the_webhook_is_not_there(client, settings):
    settings.PAYMENTS_PROVIDER = "none"
    body, header = signed(event("checkout.session.completed", {"id": "cs_x"}))
    response = client.post(
        WEBHOOK, body, content_type="application/json", headers={"stripe-signature": header}
    )
    assert response.status_code == 404
    assert not PaymentEvent.objects.exists()


# --- the success page --------------------------------------------------------------------------


def test_the_success_page_of_another_candidates_checkout_is_not_found(client, make_user, bought):
    owner, purchase, session = bought
    client.force_login(make_user(tokens=0))
    page = client.get("/tokens/buy/done/", {"session_id": session["id"]})
    assert page.status_code == 404
    assert balance(owner) == 2
    assert entries(purchase) == []
    assert client.get(f"/tokens/buy/done/{purchase.pk}/status/").status_code == 404


def test_the_success_page_without_a_session_id_says_so(client, make_user, fake_stripe):
    client.force_login(make_user())
    page = client.get("/tokens/buy/done/")
    assert page.status_code == 400
    assert b"needs the session_id" in page.content


def test_the_success_page_when_stripe_is_unreachable_grants_later(client, bought, fake_stripe):
    user, _purchase, session = bought
    client.force_login(user)
    fake_stripe.fail_next(1, status=500)
    page = client.get("/tokens/buy/done/", {"session_id": session["id"]})
    assert page.status_code == 200
    assert b"We could not reach the payment provider" in page.content
    assert b"hx-get" in page.content  # it asks again by itself
    assert balance(user) == 2
    deliver(client, event("checkout.session.completed", session))
    assert balance(user) == 62


def test_staff_search_purchases_and_events(client, staff_user, bought):
    user, purchase, session = bought
    deliver(client, event("checkout.session.completed", session))
    client.force_login(staff_user)
    for query in [user.email, str(purchase.pk), session["id"], "no such thing"]:
        page = client.get(reverse("admin:payments_purchase_changelist"), {"q": query})
        assert page.status_code == 200, query
        found = list(page.context["cl"].result_list)
        assert found == ([] if query == "no such thing" else [purchase]), query
    events = client.get(
        reverse("admin:payments_paymentevent_changelist"), {"q": "checkout.session"}
    )
    assert events.status_code == 200
    assert len(events.context["cl"].result_list) == 1
