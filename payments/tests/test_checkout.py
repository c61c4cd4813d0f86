"""Buying a pack through Stripe Checkout (the fake Stripe API on loopback): the checkout
redirect, the success page, and what each refusal says."""

import pytest
from allauth.account.models import EmailAddress
from django.urls import reverse

from ledger.models import LedgerEntry
from payments.models import Purchase
from payments.tests.fake_stripe import event, signed

pytestmark = pytest.mark.django_db

WEBHOOK = "/payments/stripe/webhook/"


def balance(user) -> int:
    user.token_account.refresh_from_db()
    return user.token_account.balance


def test_buying_a_pack_sends_the_candidate_to_stripe_and_the_success_page_grants_once(
    client, make_user, fake_stripe
):
    user = make_user(tokens=2)
    client.force_login(user)
    page = client.get(reverse("payments:buy"))
    assert page.status_code == 200
    assert b"Buy 60 tokens for 12.00 USD" in page.content

    response = client.post(reverse("payments:buy"), {"pack": "standard"})
    assert response.status_code == 303
    [created] = fake_stripe.created()
    session = fake_stripe.session_for(Purchase.objects.get().pk)
    assert response["Location"] == session["url"]
    params = created.params
    assert params["mode"] == "payment"
    assert params["line_items[0][price_data][unit_amount]"] == "1200"
    assert params["line_items[0][price_data][currency]"] == "usd"
    purchase = Purchase.objects.get()
    assert params["client_reference_id"] == str(purchase.pk)
    assert params["metadata[purchase_id]"] == str(purchase.pk)
    assert created.headers["idempotency-key"] == f"mockroom-checkout-{purchase.pk}"
    assert params["success_url"].endswith("/tokens/buy/done/?session_id={CHECKOUT_SESSION_ID}")

    fake_stripe.pay(session["id"])
    done = client.get(reverse("payments:done"), {"session_id": session["id"]})
    assert done.status_code == 200
    assert b"+60 tokens" in done.content
    assert balance(user) == 62
    # Back again (a reload), then Stripe's webhook: still one grant.
    client.get(reverse("payments:done"), {"session_id": session["id"]})
    body, header = signed(event("checkout.session.completed", fake_stripe.session_for(purchase.pk)))
    hook = client.post(WEBHOOK, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)
    assert hook.status_code == 200
    assert balance(user) == 62
    assert LedgerEntry.objects.filter(purchase=purchase.pk).count() == 1
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID
    assert purchase.receipt_url.startswith("https://pay.stripe.example/receipts/")


def test_a_double_click_reuses_the_open_purchase_and_its_session(client, make_user, fake_stripe):
    client.force_login(make_user())
    first = client.post(reverse("payments:buy"), {"pack": "starter"})
    second = client.post(reverse("payments:buy"), {"pack": "starter"})
    assert first["Location"] == second["Location"]
    assert Purchase.objects.count() == 1
    assert len(fake_stripe.created()) == 1


def test_htmx_gets_hx_redirect(client, make_user, fake_stripe):
    client.force_login(make_user())
    response = client.post(reverse("payments:buy"), {"pack": "starter"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith("https://checkout.stripe.example/")


def test_stripe_down_is_a_503_and_nothing_is_charged(client, make_user, fake_stripe):
    user = make_user(tokens=1)
    client.force_login(user)
    fake_stripe.fail_next(1, status=500)
    response = client.post(reverse("payments:buy"), {"pack": "starter"})
    assert response.status_code == 503
    assert b"the payment provider is unavailable; you were not charged" in response.content.lower()
    assert balance(user) == 1
    # The next click gets its checkout (the same purchase, the same idempotency key).
    again = client.post(reverse("payments:buy"), {"pack": "starter"})
    assert again.status_code == 303
    assert Purchase.objects.count() == 1


@pytest.mark.parametrize(
    ("pack", "status", "says"),
    [("", 422, b"Choose one of the packs"), ("gold", 422, b"Choose one of the packs")],
)
def test_an_unknown_pack_is_refused(client, make_user, fake_stripe, pack, status, says):
    client.force_login(make_user())
    response = client.post(reverse("payments:buy"), {"pack": pack})
    assert response.status_code == status
    assert says in response.content
    assert not fake_stripe.requests


def test_an_unverified_address_cannot_buy(client, make_user, fake_stripe, settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "optional"
    user = make_user()
    EmailAddress.objects.filter(user=user).update(verified=False)
    client.force_login(user)
    response = client.post(reverse("payments:buy"), {"pack": "starter"})
    assert response.status_code == 403
    assert b"Verify your email address" in response.content
    assert not Purchase.objects.exists()


def test_without_a_provider_the_page_says_staff_grant_tokens(client, make_user, settings):
    settings.PAYMENTS_PROVIDER = "none"
    client.force_login(make_user())
    page = client.get(reverse("payments:buy"))
    assert b"Purchases are not enabled on this server" in page.content
    response = client.post(reverse("payments:buy"), {"pack": "starter"})
    assert response.status_code == 403
    assert client.post(WEBHOOK, b"{}", content_type="application/json").status_code == 404
