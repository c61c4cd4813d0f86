"""What the payments tests do again and again: open a checkout on the fake Stripe, deliver a
signed event to the webhook, read a balance and a purchase's ledger entries."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from accounts.models import User
from ledger import services as ledger
from ledger.models import LedgerEntry
from payments import services
from payments.models import Purchase
from payments.packs import pack_get
from payments.tests.fake_stripe import FakeStripe, signed

WEBHOOK = "/payments/stripe/webhook/"


def purchase_open(user: User, fake_stripe: FakeStripe, *, pack: str = "standard") -> Purchase:
    """A purchase with its Checkout Session on the fake Stripe (the candidate is on its page)."""
    chosen = pack_get(pack)
    assert chosen is not None
    return services.checkout_start(user=user, pack=chosen, base_url="http://testserver")


def deliver(client: Client, payload: dict[str, Any], **sign: Any) -> Any:
    """POST one signed delivery of `payload` to the webhook, as Stripe sends it."""
    body, header = signed(payload, **sign)
    return client.post(
        WEBHOOK, body, content_type="application/json", headers={"stripe-signature": header}
    )


def answer(response: Any) -> dict[str, Any]:
    return json.loads(response.content)


def balance(user: User) -> int:
    account = user.token_account
    account.refresh_from_db()
    return account.balance


def entries(purchase: Purchase) -> list[tuple[str, int]]:
    """The purchase's ledger entries, oldest first: (kind, balance delta)."""
    return list(
        LedgerEntry.objects.filter(purchase=purchase.pk)
        .order_by("version")
        .values_list("kind", "balance_delta")
    )


def spend(user: User, count: int, *, prefix: str = "spend") -> None:
    """The candidate receives `count` questions: reserve, then capture, as the question flow
    pays for one."""
    account = user.token_account
    for index in range(count):
        hold = ledger.hold_reserve(
            account=account, request_id=f"{prefix}-{index}", purpose="question:test", actor=None
        ).hold
        ledger.hold_capture(hold=hold, reason="A question")
