"""Buying a token pack in a real browser, through the fake provider: its checkout page signs a
Stripe-shaped event and sends it through the webhook's own verification and handlers. The badge
rises on the success page; with a delayed payment method it rises there without a reload, when
the webhook's event arrives. Every page is audited with axe-core (conftest.py)."""

import pytest
from playwright.sync_api import Page, expect

from interviews.tests.browser.test_candidate_flow import new_email, sign_up
from payments.models import Purchase
from payments.views import fake_event

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _fake_payments(settings, live_server) -> None:
    settings.PAYMENTS_PROVIDER = "fake"
    settings.STRIPE_WEBHOOK_SECRET = ""
    settings.WELCOME_TOKENS = 3


def test_a_candidate_buys_a_pack_and_the_badge_rises(live_server, page: Page, a11y) -> None:
    sign_up(page, live_server.url, new_email("buyer"))
    badge = page.locator("#token-balance")
    expect(badge).to_have_text("3 tokens")

    page.get_by_role("link", name="Receipts").click()
    page.get_by_role("link", name="Buy tokens").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Buy tokens")
    expect(page.get_by_text("Test payments")).to_be_visible()
    page.get_by_role("button", name="Buy 20 tokens for 5.00 USD").click()

    # The fake provider's checkout page (htmx followed HX-Redirect to it).
    expect(page.get_by_role("heading", level=1)).to_have_text("Test checkout")
    page.get_by_role("button", name="Pay 5.00 USD").click()

    expect(page.get_by_role("status").filter(has_text="+20 tokens")).to_be_visible()
    expect(badge).to_have_text("23 tokens")
    a11y.audit(page, "paid")

    # The receipts list the purchase, named.
    page.get_by_role("link", name="Your receipts").click()
    expect(page.locator("tr.entry-purchase")).to_contain_text("Starter: 20 tokens for 5.00 USD")
    expect(page.locator("tr.entry-purchase")).to_contain_text("+20")


def test_a_delayed_payment_raises_the_badge_without_a_reload(live_server, page: Page, a11y) -> None:
    sign_up(page, live_server.url, new_email("debit"))
    page.goto(f"{live_server.url}/tokens/buy/")
    page.get_by_role("button", name="Buy 60 tokens for 12.00 USD").click()
    page.get_by_role("button", name="Pay by bank debit (confirmed later)").click()

    status = page.locator(".purchase-status")
    expect(status).to_contain_text("Payment processing")
    expect(page.locator("#token-balance")).to_have_text("3 tokens")
    a11y.audit(page, "payment processing")
    page.evaluate("window.stillTheSamePage = true")

    # The bank confirms later: the provider's event reaches the webhook over HTTP.
    purchase = Purchase.objects.get(pack_code="standard")
    body, signature = fake_event(purchase, "checkout.session.async_payment_succeeded", paid=True)
    delivered = page.context.request.post(
        f"{live_server.url}/payments/stripe/webhook/",
        data=body,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )
    assert delivered.status == 200, delivered.text()

    expect(status).to_contain_text("+60 tokens")
    expect(page.locator("#token-balance")).to_have_text("63 tokens")
    assert page.evaluate("window.stillTheSamePage") is True
    a11y.audit(page, "paid after a delay")
