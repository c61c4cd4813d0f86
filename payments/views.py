"""Buying token packs: the packs page, the checkout redirect, the success page, the webhook, and
the fake provider's checkout page (development only)."""

from __future__ import annotations

import json
import time
import uuid

from allauth.account.models import EmailAddress
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import User
from config.http import see_other
from config.limits import Limited, arate_limit
from config.types import AuthenticatedHttpRequest, HtmxHttpRequest
from ledger.middleware import mark_balance_changed
from payments import services
from payments.models import Purchase
from payments.packs import pack_get, pack_list
from payments.providers import FakeProvider, ProviderError, provider_get

# The success page asks again every POLL_SECONDS while a payment is processing, at most
# POLL_LIMIT times (then it says to come back later: the tokens arrive without the page).
POLL_SECONDS = 2
POLL_LIMIT = 30

UNAVAILABLE = "The payment provider is unavailable; you were not charged. Try again in a minute."


def _verified(user: object) -> bool:
    if settings.ACCOUNT_EMAIL_VERIFICATION == "none":  # no address is ever verified here
        return True
    return EmailAddress.objects.filter(user=user, verified=True).exists()


def _buy_page(
    request: HtmxHttpRequest, *, error: str = "", status: int = 200, chosen: str = ""
) -> HttpResponse:
    enabled = provider_get().name != "none"
    context = {
        "packs": pack_list(),
        "enabled": enabled,
        "fake": provider_get().name == "fake",
        "purchases": Purchase.objects.filter(user=request.user).order_by("-created_at")[:10],
        "verified": _verified(request.user),
        "disputed": services.dispute_open_exists(user=request.user),
        "cancelled": "cancelled" in request.GET,
        "error": error,
        "chosen": chosen,
    }
    htmx = getattr(request, "htmx", False)
    template = "payments/buy.html#buy-alert" if error and htmx else "payments/buy.html"
    return render(request, template, context, status=status)


@require_http_methods(["GET", "POST"])
async def buy(request: HtmxHttpRequest) -> HttpResponse:
    """GET: the packs, the balance and recent purchases. POST `pack`: a purchase, and a 303 to
    the provider's checkout page (htmx: HX-Redirect). Refusals say why and charge nothing."""
    if request.method != "POST":
        return await sync_to_async(_buy_page)(request)
    code = request.POST.get("pack", "")
    try:
        return await _checkout(request, code)
    except services.PurchaseRefused as exc:
        return await sync_to_async(_buy_page)(
            request, error=exc.message, status=exc.status, chosen=code
        )
    except Limited as exc:
        response = await sync_to_async(_buy_page)(
            request, error=exc.message, status=429, chosen=code
        )
        response["Retry-After"] = str(exc.retry_after)
        return response


async def _checkout(request: HtmxHttpRequest, code: str) -> HttpResponse:
    if provider_get().name == "none":
        raise services.PurchaseRefused(
            "Purchases are not enabled on this server: the Mockroom team grants tokens."
        )
    pack = pack_get(code)
    if pack is None:
        raise services.PurchaseRefused("Choose one of the packs below.", status=422)
    user = await request.auser()
    if not isinstance(user, User) or not await sync_to_async(_verified)(user):
        raise services.PurchaseRefused(
            "Verify your email address before buying tokens: the link is in the email we sent "
            "you (your account page sends it again)."
        )
    await arate_limit(
        request, action="purchases", rates=settings.RATE_LIMIT_PURCHASES, what="Too many checkouts"
    )
    base_url = request.build_absolute_uri("/").rstrip("/")
    try:
        purchase = await sync_to_async(services.checkout_start)(
            user=user, pack=pack, base_url=base_url
        )
    except ProviderError as exc:
        services.logger.warning("checkout not started: %s", exc)
        raise services.PurchaseRefused(UNAVAILABLE, status=503) from exc
    if request.htmx:
        response = HttpResponse(status=200)
        response["HX-Redirect"] = purchase.checkout_url
        return response
    return see_other(purchase.checkout_url)


@require_GET
def done(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Where the provider sends the candidate back: the session is asked for (outside any
    transaction) and fulfilled through the same function as the webhook's. "+N tokens", or
    "payment processing" with a bounded poll."""
    session_id = request.GET.get("session_id", "")
    if not session_id:
        return render(
            request,
            "payments/done.html",
            {"error": "This page needs the session_id the payment provider adds to it."},
            status=400,
        )
    purchase = Purchase.objects.filter(checkout_session_id=session_id, user=request.user).first()
    if purchase is None:
        raise Http404("No purchase of yours has this checkout session.")
    unreachable = False
    try:
        session = provider_get().checkout_get(session_id)
    except ProviderError as exc:
        services.logger.warning("purchase %s not checked on return: %s", purchase.pk, exc)
        unreachable = True
    else:
        try:
            purchase = services.session_settle(session=session, user=request.user)
        except services.NotYours as exc:
            raise Http404(str(exc)) from exc
    return render(
        request,
        "payments/done.html",
        _status_context(purchase, poll=1) | {"unreachable": unreachable},
    )


def _status_context(purchase: Purchase, *, poll: int) -> dict[str, object]:
    waiting = purchase.is_open
    return {
        "purchase": purchase,
        "waiting": waiting,
        "poll": poll if waiting and poll <= POLL_LIMIT else 0,
        "poll_seconds": POLL_SECONDS,
        "fake": purchase.provider == "fake" and provider_get().name == "fake",
    }


@require_GET
def status(request: HtmxHttpRequest, purchase_id: uuid.UUID) -> HttpResponse:
    """The success page's poll (htmx): the purchase's status; once paid, the badge too."""
    purchase = get_object_or_404(Purchase, pk=purchase_id, user=request.user)
    try:
        poll = max(1, int(request.GET.get("poll", "1")))
    except ValueError:
        poll = 1
    context = _status_context(purchase, poll=poll + 1)
    if purchase.status == Purchase.Status.PAID:
        mark_balance_changed(request)
    return render(request, "payments/done.html#purchase-status", context)


@csrf_exempt
@login_not_required
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Stripe's events. 400: the signature does not verify (nothing stored); 500: stored but
    not processed (Stripe retries); 200: processed now, or before (a replay)."""
    if provider_get().name == "none":
        raise Http404("Purchases are not enabled on this server.")
    try:
        receipt = services.event_receive(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except services.BadSignature as exc:
        return JsonResponse({"error": f"Bad signature: {exc}"}, status=400)
    except services.BadEvent as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except services.EventFailed as exc:
        return JsonResponse({"error": f"Not processed, retry: {exc}"}, status=500)
    return JsonResponse(
        {"received": receipt.event_id, "outcome": receipt.outcome, "replay": receipt.replay}
    )


# --- the fake provider (PAYMENTS_PROVIDER=fake: development and demos) ------------------------


def _fake_purchase(request: AuthenticatedHttpRequest, session_id: str) -> Purchase:
    if provider_get().name != "fake":
        raise Http404("The fake payment provider is not enabled.")
    return get_object_or_404(Purchase, checkout_session_id=session_id, user=request.user)


def fake_event(purchase: Purchase, event_type: str, *, paid: bool) -> tuple[bytes, str]:
    """A Stripe-shaped event about the purchase's Checkout Session, signed with the webhook
    secret as Stripe signs it: (body, Stripe-Signature header)."""
    import stripe

    payment_intent = purchase.payment_intent_id or f"pi_fake_{purchase.pk.hex[:24]}"
    event = {
        "id": f"evt_fake_{uuid.uuid4().hex}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "data": {
            "object": {
                "id": purchase.checkout_session_id,
                "object": "checkout.session",
                "mode": "payment",
                "status": "complete",
                "payment_status": "paid" if paid else "unpaid",
                "amount_total": purchase.amount,
                "currency": purchase.currency,
                "client_reference_id": str(purchase.pk),
                "metadata": {"purchase_id": str(purchase.pk)},
                "payment_intent": payment_intent,
            }
        },
    }
    body = json.dumps(event)
    secret = FakeProvider().webhook_secret
    return body.encode(), stripe.WebhookSignature.generate_signature_header(body, secret)


@require_http_methods(["GET", "POST"])
def fake_checkout(request: AuthenticatedHttpRequest, session_id: str) -> HttpResponse:
    """A stand-in for Stripe's hosted page. "Pay" and "Pay by bank debit" (a delayed method,
    then "The bank confirms") send signed events through the webhook's own code."""
    purchase = _fake_purchase(request, session_id)
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "cancel":
            return see_other(reverse("payments:buy") + "?cancelled=1")
        kinds = {
            "pay": ("checkout.session.completed", True),
            "delayed": ("checkout.session.completed", False),
            "confirm": ("checkout.session.async_payment_succeeded", True),
            "fail": ("checkout.session.async_payment_failed", False),
        }
        if action not in kinds:
            return render(
                request,
                "payments/fake_checkout.html",
                {"purchase": purchase, "error": "Choose Pay, Pay by bank debit or Cancel."},
                status=422,
            )
        event_type, paid = kinds[action]
        body, signature = fake_event(purchase, event_type, paid=paid)
        try:
            services.event_receive(payload=body, signature=signature)
        except services.EventFailed:
            return render(
                request,
                "payments/fake_checkout.html",
                {"purchase": purchase, "error": "The payment could not be processed: try again."},
                status=500,
            )
        if action in ("pay", "delayed"):
            return see_other(
                reverse("payments:done") + f"?session_id={purchase.checkout_session_id}"
            )
        purchase.refresh_from_db()
    return render(request, "payments/fake_checkout.html", {"purchase": purchase})
