"""System checks of the payments settings.

payments.E001: PAYMENTS_PROVIDER=fake with DEBUG off: the fake checkout grants tokens for nothing.
payments.E002: PAYMENTS_PROVIDER=stripe without STRIPE_SECRET_KEY.
payments.E003: TOKEN_PACKS does not describe packs.
payments.E004 (deploy): PAYMENTS_PROVIDER=stripe without STRIPE_WEBHOOK_SECRET: paid purchases
would only be granted when the candidate comes back to the success page.
"""

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from payments.packs import InvalidPacks, pack_list


@register("payments")
def check_payments(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if settings.PAYMENTS_PROVIDER == "fake" and not settings.DEBUG:
        errors.append(
            Error(
                "PAYMENTS_PROVIDER=fake with DEBUG off: the fake checkout grants tokens without "
                "any payment.",
                hint="Use PAYMENTS_PROVIDER=stripe (with STRIPE_SECRET_KEY and "
                "STRIPE_WEBHOOK_SECRET) or none.",
                id="payments.E001",
            )
        )
    if settings.PAYMENTS_PROVIDER == "stripe" and not settings.STRIPE_SECRET_KEY:
        errors.append(
            Error(
                "PAYMENTS_PROVIDER=stripe without STRIPE_SECRET_KEY.",
                hint="Set STRIPE_SECRET_KEY (sk_test_... in test mode), or PAYMENTS_PROVIDER=none.",
                id="payments.E002",
            )
        )
    try:
        pack_list()
    except InvalidPacks as exc:
        errors.append(Error(str(exc), id="payments.E003"))
    return errors


@register("payments", deploy=True)
def check_webhook_secret(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    if settings.PAYMENTS_PROVIDER != "stripe" or settings.STRIPE_WEBHOOK_SECRET:
        return []
    return [
        Error(
            "PAYMENTS_PROVIDER=stripe without STRIPE_WEBHOOK_SECRET: Stripe's events cannot be "
            "verified, so a payment is granted only if the candidate comes back to the success "
            "page, and refunds and disputes are never applied.",
            hint="Add the endpoint /payments/stripe/webhook/ in Stripe's dashboard and set its "
            "signing secret (whsec_...) as STRIPE_WEBHOOK_SECRET.",
            id="payments.E004",
        )
    ]
