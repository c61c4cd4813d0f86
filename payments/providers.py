"""Where candidates pay: Stripe Checkout, a local fake checkout (development), or nowhere.

The provider is the only code here that talks to the network. Its results are plain data
(CheckoutSession, dicts as the provider's API returns them), so the services that act on them
never hold a provider object inside a database transaction.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.urls import reverse

if TYPE_CHECKING:
    from payments.models import Purchase


class ProviderError(Exception):
    """The payment provider could not be reached or refused the request: nothing was charged."""


class PaymentsOff(ProviderError):
    """No payment provider is configured here (PAYMENTS_PROVIDER=none)."""


@dataclass(frozen=True)
class CheckoutSession:
    """The part of a Checkout Session Mockroom reads (Stripe's field names)."""

    id: str
    url: str
    status: str  # open, complete, expired
    payment_status: str  # paid, unpaid, no_payment_required
    mode: str
    amount_total: int | None
    currency: str
    client_reference_id: str
    purchase_id: str  # metadata.purchase_id
    payment_intent: str
    charge_id: str
    receipt_url: str
    expires_at: datetime | None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> CheckoutSession:
        intent = data.get("payment_intent") or ""
        charge: Any = {}
        if isinstance(intent, dict):  # expanded
            charge = intent.get("latest_charge") or {}
            intent = intent.get("id", "")
        if not isinstance(charge, dict):
            charge = {"id": charge}
        expires = data.get("expires_at")
        return cls(
            id=str(data.get("id", "")),
            url=str(data.get("url") or ""),
            status=str(data.get("status") or ""),
            payment_status=str(data.get("payment_status") or ""),
            mode=str(data.get("mode") or ""),
            amount_total=data.get("amount_total"),
            currency=str(data.get("currency") or "").lower(),
            client_reference_id=str(data.get("client_reference_id") or ""),
            purchase_id=str((data.get("metadata") or {}).get("purchase_id") or ""),
            payment_intent=str(intent or ""),
            charge_id=str(charge.get("id") or ""),
            receipt_url=str(charge.get("receipt_url") or ""),
            expires_at=datetime.fromtimestamp(expires, UTC) if isinstance(expires, int) else None,
        )


class Provider(Protocol):
    name: str

    @property
    def webhook_secret(self) -> str: ...

    def checkout_create(self, *, purchase: Purchase, base_url: str) -> CheckoutSession: ...

    def checkout_get(self, session_id: str) -> CheckoutSession: ...

    def refund_create(self, *, purchase: Purchase, amount: int, key: str) -> dict[str, Any]: ...

    def charge_get(self, charge_id: str) -> dict[str, Any]: ...


def _session_params(purchase: Purchase, base_url: str) -> dict[str, Any]:
    done = base_url + reverse("payments:done")
    metadata = {"purchase_id": str(purchase.id)}
    return {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": purchase.currency,
                    "unit_amount": purchase.amount,
                    "product_data": {
                        "name": f"{purchase.tokens} Mockroom tokens ({purchase.pack_name})"
                    },
                },
            }
        ],
        "client_reference_id": str(purchase.id),
        "metadata": metadata,
        # On the payment, so that its charge, refunds and disputes name the purchase too.
        "payment_intent_data": {"metadata": metadata},
        "customer_email": purchase.user.email if purchase.user else purchase.account.email,
        "success_url": done + "?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": base_url + reverse("payments:buy") + "?cancelled=1",
    }


class StripeProvider:
    """Stripe, through the official client: built once per process, with retries (its default
    is none) that reuse each request's idempotency key."""

    name = "stripe"

    def __init__(self) -> None:
        import stripe

        self._stripe = stripe
        self.client = stripe.StripeClient(
            settings.STRIPE_SECRET_KEY,
            base_addresses={"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else {},
            max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
            http_client=stripe.RequestsClient(timeout=20),
        )

    @property
    def webhook_secret(self) -> str:
        return settings.STRIPE_WEBHOOK_SECRET

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            result = method(*args, **kwargs)
        except self._stripe.StripeError as exc:
            raise ProviderError(f"{type(exc).__name__}: {exc.user_message or exc}") from exc
        return result.to_dict()

    def checkout_create(self, *, purchase: Purchase, base_url: str) -> CheckoutSession:
        data = self._call(
            self.client.v1.checkout.sessions.create,
            params=_session_params(purchase, base_url),
            # The same purchase asks for the same session, however often it is asked.
            options={"idempotency_key": f"mockroom-checkout-{purchase.id}"},
        )
        return CheckoutSession.from_api(data)

    def checkout_get(self, session_id: str) -> CheckoutSession:
        data = self._call(
            self.client.v1.checkout.sessions.retrieve,
            session_id,
            params={"expand": ["payment_intent.latest_charge"]},
        )
        return CheckoutSession.from_api(data)

    def refund_create(self, *, purchase: Purchase, amount: int, key: str) -> dict[str, Any]:
        return self._call(
            self.client.v1.refunds.create,
            params={
                "payment_intent": purchase.payment_intent_id,
                "amount": amount,
                "metadata": {"purchase_id": str(purchase.id)},
            },
            options={"idempotency_key": key},
        )

    def charge_get(self, charge_id: str) -> dict[str, Any]:
        return self._call(self.client.v1.charges.retrieve, charge_id)


class FakeProvider:
    """A checkout page on this server: its "Pay" signs a Stripe-shaped event with the webhook
    secret and sends it through the same verification and handlers as Stripe's. Development
    and demos only: a system check stops a server with DEBUG off from using it."""

    name = "fake"

    @property
    def webhook_secret(self) -> str:
        if settings.STRIPE_WEBHOOK_SECRET:
            return settings.STRIPE_WEBHOOK_SECRET
        digest = hmac.new(settings.SECRET_KEY.encode(), b"fake-payments", hashlib.sha256)
        return "whsec_fake_" + digest.hexdigest()[:32]

    def checkout_create(self, *, purchase: Purchase, base_url: str) -> CheckoutSession:
        session_id = f"cs_fake_{purchase.id.hex}"
        return self._session(purchase, session_id, base_url=base_url)

    def checkout_get(self, session_id: str) -> CheckoutSession:
        from payments.models import Purchase

        purchase = Purchase.objects.filter(checkout_session_id=session_id).first()
        if purchase is None:
            raise ProviderError(f"No such checkout session: {session_id}")
        return self._session(purchase, session_id, base_url="")

    def _session(self, purchase: Purchase, session_id: str, *, base_url: str) -> CheckoutSession:
        from payments.models import Purchase

        paid = purchase.status in (Purchase.Status.PAID, Purchase.Status.REVIEW)
        done = purchase.status != Purchase.Status.OPEN
        return CheckoutSession(
            id=session_id,
            url=base_url + reverse("payments:fake_checkout", args=[session_id]),
            status="complete" if done else "open",
            payment_status="paid" if paid else "unpaid",
            mode="payment",
            amount_total=purchase.amount,
            currency=purchase.currency,
            client_reference_id=str(purchase.id),
            purchase_id=str(purchase.id),
            payment_intent=purchase.payment_intent_id,
            charge_id=purchase.charge_id,
            receipt_url="",
            expires_at=None,
        )

    def refund_create(self, *, purchase: Purchase, amount: int, key: str) -> dict[str, Any]:
        raise ProviderError("The fake provider makes no refunds: send a charge.refunded event.")

    def charge_get(self, charge_id: str) -> dict[str, Any]:
        raise ProviderError("The fake provider has no charges.")


class NoProvider:
    name = "none"
    webhook_secret = ""

    def _off(self, *args: Any, **kwargs: Any) -> Any:
        raise PaymentsOff("Purchases are not enabled on this server.")

    checkout_create = checkout_get = refund_create = charge_get = _off


@functools.cache
def _provider(name: str, key: str, base: str) -> Provider:
    if name == "stripe":
        return StripeProvider()
    if name == "fake":
        return FakeProvider()
    return NoProvider()


def provider_get() -> Provider:
    """The configured provider, built once per process (and per configuration: tests change
    it)."""
    return _provider(
        settings.PAYMENTS_PROVIDER, settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE
    )
