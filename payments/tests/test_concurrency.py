"""The webhook, its retries and the success page racing over real PostgreSQL row locks: one
grant per purchase, whatever arrives first, and no deadlock."""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections
from django.test import Client

from ledger.models import LedgerEntry
from ledger.selectors import account_problem_list
from payments.models import PaymentEvent, Purchase
from payments.tests.fake_stripe import charge_refunded, event, signed
from payments.tests.flow import WEBHOOK, balance, entries, purchase_open

pytestmark = pytest.mark.django_db(transaction=True)

JOIN_TIMEOUT = 60  # seconds: a deadlock fails the test instead of hanging the suite


def race(tasks: list[Callable[[], Any]]) -> list[Any]:
    """Run the tasks in threads released together; each closes its own database connection.
    Returns each task's result, or the exception it raised."""
    barrier = threading.Barrier(len(tasks))
    results: list[Any] = [None] * len(tasks)

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=JOIN_TIMEOUT)
            results[index] = tasks[index]()
        except BaseException as exc:  # collected for the test to inspect
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(tasks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck (deadlock?)"
    return results


def webhook_delivery(body: bytes, header: str) -> Callable[[], int]:
    def deliver() -> int:
        response = Client().post(
            WEBHOOK, body, content_type="application/json", headers={"stripe-signature": header}
        )
        return response.status_code

    return deliver


def success_page(user, session_id: str) -> Callable[[], int]:
    client = Client()
    client.force_login(user)  # here, before the race: the session row is committed now

    def open_page() -> int:
        response = client.get("/tokens/buy/done/", {"session_id": session_id})
        assert b"+60 tokens" in response.content
        return response.status_code

    return open_page


def test_one_event_delivered_five_times_at_once_and_the_success_page_grant_once(
    make_user, fake_stripe
):
    user = make_user(tokens=3)
    purchase = purchase_open(user, fake_stripe)
    session = fake_stripe.pay(purchase.checkout_session_id)
    payload = event("checkout.session.completed", session)
    body, header = signed(payload)

    results = race(
        [webhook_delivery(body, header) for _ in range(5)] + [success_page(user, session["id"])]
    )

    assert results == [200] * 6
    assert balance(user) == 63
    assert entries(purchase) == [("purchase", 60)]
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.PURCHASE).count() == 1
    stored = PaymentEvent.objects.get()
    assert stored.processed_at is not None
    assert stored.attempts == 1
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID
    assert account_problem_list() == []


def test_different_events_for_one_session_racing_grant_once(make_user, fake_stripe):
    """completed and async_payment_succeeded, each sent more than once under its own id (as
    Stripe does when it resends), with the success page: one grant."""
    user = make_user(tokens=0)
    purchase = purchase_open(user, fake_stripe)
    session = fake_stripe.pay(purchase.checkout_session_id)
    kinds = ["checkout.session.completed"] * 3 + ["checkout.session.async_payment_succeeded"] * 2
    deliveries = [signed(event(kind, session)) for kind in kinds]

    results = race(
        [webhook_delivery(body, header) for body, header in deliveries]
        + [success_page(user, session["id"])]
    )

    assert results == [200] * 6
    assert balance(user) == 60
    assert entries(purchase) == [("purchase", 60)]
    assert PaymentEvent.objects.count() == 5
    assert not PaymentEvent.objects.filter(processed_at__isnull=True).exists()
    outcomes = sorted(PaymentEvent.objects.values_list("outcome", flat=True))
    assert outcomes.count("granted 60 token(s)") <= 1
    assert set(outcomes) <= {"granted 60 token(s)", "already paid"}
    assert account_problem_list() == []


def test_a_refund_racing_the_payment_it_refunds_is_applied_once(make_user, fake_stripe):
    """charge.refunded and checkout.session.completed, each delivered three times at once: the
    grant and the take-back both happen, once each, in either order."""
    user = make_user(tokens=0)
    purchase = purchase_open(user, fake_stripe)
    session = fake_stripe.pay(purchase.checkout_session_id)
    charge = fake_stripe.charge_of(purchase.checkout_session_id)
    paid = signed(event("checkout.session.completed", session))
    refunded = signed(charge_refunded(charge, 1200))

    results = race([webhook_delivery(*paid), webhook_delivery(*refunded)] * 3)

    assert results == [200] * 6
    assert balance(user) == 0
    assert entries(purchase) == [("purchase", 60), ("reversal", -60)]
    purchase.refresh_from_db()
    assert (purchase.status, purchase.refund_tokens_taken, purchase.shortfall) == (
        Purchase.Status.PAID,
        60,
        0,
    )
    assert account_problem_list() == []
