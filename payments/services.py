"""Buying token packs: checkout, fulfilment exactly once, refunds and disputes.

    checkout_start     a Purchase (or the open one a double click left), then, outside any
                       transaction, the provider's Checkout Session for it (idempotent by the
                       purchase's id)
    session_settle     THE fulfilment: from the success page (a session just retrieved) and from
                       the webhook's checkout.session.* events. Locks the purchase, checks that
                       what was paid is what was sold, grants the pack's tokens once
    event_receive      the webhook: signature verified, the event stored by its id (a replay is
                       a no-op), processed in one durable transaction with no network call,
                       marked processed only when that transaction commits
    refunds, disputes  take back only unspent tokens (the shortfall is recorded), and a won
                       dispute gives back exactly what it took

Locks, always in this order: the event, the purchase, the account (ledger.services). The
database holds one grant per purchase (ledger_entry_one_grant_per_purchase), so the webhook, its
retries and the success page racing each other grant once whatever happens here.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from ledger import services as ledger
from payments.models import PaymentEvent, Purchase, money
from payments.packs import Pack
from payments.providers import CheckoutSession, ProviderError, provider_get

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)

Status = Purchase.Status
Dispute = Purchase.Dispute

# Stripe signs a timestamp with each delivery; older than this, a delivery is refused (replayed
# by someone who captured it). Stripe's own default.
SIGNATURE_TOLERANCE_SECONDS = 300
# A Checkout Session lives 24 hours unless told otherwise: an open purchase older than this is
# not reused (its page has expired).
CHECKOUT_LIFETIME = timedelta(hours=24)
# An event about a charge no purchase can be matched with yet (its checkout.session.completed
# not processed yet) is retried by Stripe for this long, then answered as not ours.
UNMATCHED_RETRY_WINDOW = timedelta(days=1)


class PurchaseRefused(Exception):
    """The candidate may not buy now: the message says why (shown as is)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class BadSignature(Exception):
    """The webhook's Stripe-Signature does not verify (forged, stale or missing)."""


class BadEvent(Exception):
    """The webhook's body is not an event (no id, type or object)."""


class EventFailed(Exception):
    """Processing a stored event failed: nothing it did was kept; the provider retries."""


class NotYours(Exception):
    """The checkout session belongs to another user's purchase, or to none."""


# --- checkout ----------------------------------------------------------------------------------


def dispute_open_exists(*, user: User) -> bool:
    return Purchase.objects.filter(user=user, dispute_status=Dispute.OPEN).exists()


def purchase_start(*, user: User, pack: Pack) -> Purchase:
    """The user's open purchase of this pack (a double click, a second tab, the back button), or
    a new one: one open purchase per user and pack, held by a unique constraint."""
    if dispute_open_exists(user=user):
        raise PurchaseRefused(
            "A payment of yours is disputed: new purchases are paused until the dispute is "
            "closed. Contact the Mockroom team if this is a mistake."
        )
    account = ledger.account_get_or_open(user=user)
    stale = timezone.now() - CHECKOUT_LIFETIME
    for _attempt in range(3):
        open_ = Purchase.objects.filter(user=user, pack_code=pack.code, status=Status.OPEN)
        existing = open_.first()
        if existing is not None:
            ends = existing.checkout_expires_at or existing.created_at + CHECKOUT_LIFETIME
            expired = ends <= timezone.now() or existing.created_at <= stale
            if not expired:
                return existing
            Purchase.objects.filter(pk=existing.pk, status=Status.OPEN).update(
                status=Status.EXPIRED, updated_at=timezone.now()
            )
            continue
        try:
            with transaction.atomic():
                return Purchase.objects.create(
                    user=user,
                    account=account,
                    provider=provider_get().name,
                    pack_code=pack.code,
                    pack_name=pack.name,
                    tokens=pack.tokens,
                    amount=pack.amount,
                    currency=pack.currency,
                )
        except IntegrityError:  # the other click created it first: reuse that one
            continue
    raise PurchaseRefused("Your checkout could not be started: try again.", status=409)


def checkout_start(*, user: User, pack: Pack, base_url: str) -> Purchase:
    """A purchase with the provider's checkout page to send the candidate to.

    The provider is called outside any transaction, with an idempotency key derived from the
    purchase: two clicks that share the open purchase get the same Checkout Session. Raises
    ProviderError (nothing charged) when the provider cannot be reached.
    """
    purchase = purchase_start(user=user, pack=pack)
    if purchase.checkout_url:
        return purchase
    session = provider_get().checkout_create(purchase=purchase, base_url=base_url)
    if not session.url or not session.id:
        raise ProviderError("The payment provider returned no checkout page.")
    Purchase.objects.filter(pk=purchase.pk, checkout_session_id__isnull=True).update(
        checkout_session_id=session.id,
        checkout_url=session.url,
        checkout_expires_at=session.expires_at,
        updated_at=timezone.now(),
    )
    purchase.refresh_from_db()
    return purchase


# --- fulfilment ------------------------------------------------------------------------------


def _locked(purchase_id: uuid.UUID | str) -> Purchase | None:
    # Not a UUID (another app's Checkout Session on the same Stripe account): not ours. The
    # UUIDField would raise ValidationError for it, and the event would be retried for days.
    if not isinstance(purchase_id, uuid.UUID) and not _is_uuid(str(purchase_id)):
        return None
    try:
        return Purchase.objects.select_for_update().get(pk=purchase_id)
    except Purchase.DoesNotExist:
        return None


def _session_purchase_id(session: CheckoutSession) -> str:
    return session.client_reference_id or session.purchase_id


def _settle_locked(purchase: Purchase, session: CheckoutSession) -> str:
    """Bring a locked purchase up to what its Checkout Session says. Returns what happened."""
    if session.id and purchase.checkout_session_id not in (None, session.id):
        return f"session {session.id} is not this purchase's ({purchase.checkout_session_id})"
    changed: list[str] = ["updated_at"]
    if session.payment_intent and purchase.payment_intent_id != session.payment_intent:
        purchase.payment_intent_id = session.payment_intent
        changed.append("payment_intent_id")
    if session.charge_id and not purchase.charge_id:
        purchase.charge_id = session.charge_id
        changed.append("charge_id")
    if session.receipt_url and not purchase.receipt_url:
        purchase.receipt_url = session.receipt_url
        changed.append("receipt_url")
    outcome = f"purchase {purchase.status}"
    if purchase.status in (Status.PAID, Status.REVIEW):
        outcome = f"already {purchase.status}"
    elif session.payment_status == "paid":
        mismatch = _mismatch(purchase, session)
        if mismatch:
            purchase.status, purchase.problem = Status.REVIEW, mismatch
            changed += ["status", "problem"]
            logger.error("purchase %s paid but not granted: %s", purchase.pk, mismatch)
            outcome = "not granted: " + mismatch
        else:
            ledger.purchase_grant(
                account_id=purchase.account_id,
                purchase=purchase.pk,
                amount=purchase.tokens,
                reason=f"Bought {purchase.pack_name}: {purchase.price}",
            )
            purchase.status, purchase.paid_at = Status.PAID, timezone.now()
            changed += ["status", "paid_at"]
            outcome = f"granted {purchase.tokens} token(s)"
    elif session.status == "complete" and purchase.status == Status.OPEN:
        purchase.status = Status.PROCESSING  # a delayed payment method: its result comes later
        changed.append("status")
        outcome = "payment processing"
    elif session.status == "expired" and purchase.status == Status.OPEN:
        purchase.status = Status.EXPIRED
        changed.append("status")
        outcome = "checkout expired"
    purchase.save(update_fields=changed)
    early = purchase.amount_refunded or purchase.dispute_status
    if purchase.status == Status.PAID and early:
        _take_backs_locked(purchase)  # a refund or dispute that arrived before the payment
    return outcome


def _mismatch(purchase: Purchase, session: CheckoutSession) -> str:
    problems = []
    if session.mode != "payment":
        problems.append(f"mode {session.mode!r}")
    if session.amount_total != purchase.amount:
        problems.append(f"amount {session.amount_total} (sold for {purchase.amount})")
    if session.currency != purchase.currency:
        problems.append(f"currency {session.currency!r} (sold in {purchase.currency!r})")
    if _session_purchase_id(session) != str(purchase.pk):
        problems.append(f"reference {_session_purchase_id(session)!r}")
    return ", ".join(problems)


def session_settle(*, session: CheckoutSession, user: User | None = None) -> Purchase:
    """Fulfil the purchase a Checkout Session is for, once: the success page's call (the
    webhook's goes through the same _settle_locked). With `user`, the purchase must be theirs."""
    with transaction.atomic(durable=True):
        purchase = _locked(_session_purchase_id(session))
        if purchase is None or (user is not None and purchase.user_id != user.pk):
            raise NotYours("This checkout is not one of your purchases.")
        _settle_locked(purchase, session)
    return purchase


# --- refunds and disputes ----------------------------------------------------------------------


def _take_backs_locked(purchase: Purchase, *, actor: User | None = None) -> None:
    """Take back what refunds and a dispute say, and give back what a won dispute took: each
    only once, each only from unspent tokens (what cannot be taken is the shortfall). Saves the
    purchase, with whatever the caller changed on it. `actor`: the staff member who refunded."""
    if purchase.status != Status.PAID:
        # Nothing granted yet: done when the payment is. What the provider said (a refund, a
        # dispute) is kept for then.
        purchase.save()
        return
    # The refunded share of the pack, rounded up (whole tokens): a full refund is every token.
    owed = min(purchase.tokens, -(-purchase.tokens * purchase.amount_refunded // purchase.amount))
    if owed > purchase.refund_tokens_owed:
        wanted = owed - purchase.refund_tokens_owed
        back = ledger.purchase_take_back(
            account_id=purchase.account_id,
            purchase=purchase.pk,
            wanted=wanted,
            reason=f"Refund of {money(purchase.amount_refunded, purchase.currency)} "
            f"for {purchase.pack_name}: {wanted} token(s) back",
            actor=actor,
        )
        purchase.refund_tokens_owed = owed
        purchase.refund_tokens_taken += back.taken
        purchase.shortfall += back.shortfall
    # A dispute lost before it was seen open (events arrive in any order) takes back too.
    disputed = purchase.dispute_status in (Dispute.OPEN, Dispute.LOST)
    if disputed and purchase.dispute_taken_at is None:
        _granted, left = ledger.purchase_totals(purchase=purchase.pk)
        if left > 0:
            back = ledger.purchase_take_back(
                account_id=purchase.account_id,
                purchase=purchase.pk,
                wanted=left,
                reason=f"Payment for {purchase.pack_name} disputed: its unspent tokens held back",
            )
            purchase.dispute_tokens_taken = back.taken
            purchase.shortfall += back.shortfall
        purchase.dispute_taken_at = timezone.now()
    if (
        purchase.dispute_status in (Dispute.WON, Dispute.LOST)
        and purchase.dispute_settled_at is None
    ):
        if purchase.dispute_status == Dispute.WON and purchase.dispute_tokens_taken:
            ledger.purchase_reinstate(
                account_id=purchase.account_id,
                purchase=purchase.pk,
                amount=purchase.dispute_tokens_taken,
                reason=f"Dispute over {purchase.pack_name} closed in your favour: tokens back",
            )
        purchase.dispute_settled_at = timezone.now()
    purchase.save()


def refund_apply(
    *,
    purchase_id: uuid.UUID,
    amount_refunded: int,
    charge: dict[str, Any],
    actor: User | None = None,
) -> Purchase:
    """What the provider says of a charge's refunds, applied in a durable transaction (the
    admin's refund, right after making it; the webhook uses _refund_locked in its own)."""
    with transaction.atomic(durable=True):
        purchase = _locked(purchase_id)
        if purchase is None:
            raise Purchase.DoesNotExist(f"No purchase {purchase_id}.")
        _refund_locked(purchase, amount_refunded, charge, actor=actor)
    return purchase


def _refund_locked(
    purchase: Purchase, amount_refunded: int, charge: dict[str, Any], *, actor: User | None = None
) -> str:
    # Cumulative: an older or repeated event says less or the same, and changes nothing.
    if charge.get("id") and not purchase.charge_id:
        purchase.charge_id = charge["id"]
    if charge.get("receipt_url") and not purchase.receipt_url:
        purchase.receipt_url = charge["receipt_url"]
    if charge.get("payment_intent") and not purchase.payment_intent_id:
        purchase.payment_intent_id = str(charge["payment_intent"])
    refunded = min(max(int(amount_refunded or 0), purchase.amount_refunded), purchase.amount)
    before = purchase.refund_tokens_taken, purchase.shortfall
    purchase.amount_refunded = refunded
    _take_backs_locked(purchase, actor=actor)
    taken = purchase.refund_tokens_taken - before[0]
    short = purchase.shortfall - before[1]
    return f"refunded {money(refunded, purchase.currency)} in all: {taken} token(s) taken back" + (
        f", {short} already spent" if short else ""
    )


# --- the webhook -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    event_id: str
    outcome: str
    replay: bool = False


def event_verify(*, payload: bytes, signature: str) -> dict[str, Any]:
    """The event in a webhook's body, once its Stripe-Signature verifies against the webhook
    secret within the tolerance. Raises BadSignature or BadEvent; nothing is stored."""
    import stripe

    secret = provider_get().webhook_secret
    if not secret:
        raise BadSignature("No webhook secret is configured here.")
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(
            text, signature, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        raise BadSignature(str(exc).split("\n")[0][:200]) from exc
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadEvent(f"The body is not JSON: {exc}") from exc
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and event["id"]
        and isinstance(event.get("type"), str)
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
    ):
        raise BadEvent("The body is not an event: it needs id, type and data.object.")
    return event


def event_receive(*, payload: bytes, signature: str) -> Receipt:
    """Verify, store by id, process. Raises BadSignature/BadEvent (answer 400: nothing stored) or
    EventFailed (answer 500: stored, not processed; the provider retries)."""
    data = event_verify(payload=payload, signature=signature)
    created = data.get("created")
    event, _new = PaymentEvent.objects.get_or_create(
        pk=data["id"],
        defaults={
            "type": data["type"][:100],
            "livemode": bool(data.get("livemode")),
            "created": datetime.fromtimestamp(created, UTC)
            if isinstance(created, int)
            else timezone.now(),
            "payload": data,
        },
    )
    if event.processed_at is not None:
        return Receipt(event_id=event.pk, outcome=event.outcome, replay=True)
    return event_process(event_id=event.pk)


def event_process(*, event_id: str) -> Receipt:
    """Process a stored event in one durable transaction; marked processed when it commits.
    Safe to call again (staff's "reprocess", a concurrent delivery): the event's lock makes the
    second caller wait, then find it processed."""
    try:
        with transaction.atomic(durable=True):
            event = PaymentEvent.objects.select_for_update().get(pk=event_id)
            if event.processed_at is not None:
                return Receipt(event_id=event.pk, outcome=event.outcome, replay=True)
            handler = HANDLERS.get(event.type, _ignored)
            outcome, purchase = handler(event)
            event.processed_at = timezone.now()
            event.attempts += 1
            event.outcome = outcome[:200]
            event.last_error = ""
            event.purchase = purchase
            event.save()
    except Unmatched as exc:
        _event_failed(event_id, str(exc))
        raise EventFailed(str(exc)) from exc
    except Exception as exc:
        logger.exception("payment event %s could not be processed", event_id)
        _event_failed(event_id, f"{type(exc).__name__}: {exc}")
        raise EventFailed(f"{type(exc).__name__}") from exc
    logger.info("payment event %s (%s): %s", event.pk, event.type, event.outcome)
    return Receipt(event_id=event.pk, outcome=event.outcome)


def _event_failed(event_id: str, error: str) -> None:
    from django.db.models import F

    PaymentEvent.objects.filter(pk=event_id, processed_at__isnull=True).update(
        attempts=F("attempts") + 1, last_error=error[:2000]
    )


class Unmatched(Exception):
    """An event about a charge no purchase matches yet: answered 500 so the provider retries
    (its checkout.session.completed may still be on its way)."""


Handled = tuple[str, Purchase | None]


def _ignored(event: PaymentEvent) -> Handled:
    return "not handled: stored", None


def _on_session(event: PaymentEvent) -> Handled:
    session = CheckoutSession.from_api(event.payload["data"]["object"])
    purchase = _locked(_session_purchase_id(session))
    if purchase is None:
        return "no such purchase: not ours", None
    if event.type == "checkout.session.async_payment_failed":
        if purchase.status in (Status.OPEN, Status.PROCESSING):
            purchase.status = Status.FAILED
            purchase.save(update_fields=["status", "updated_at"])
            return "payment failed: nothing granted", purchase
        return f"payment failed, purchase already {purchase.status}", purchase
    if event.type == "checkout.session.expired":
        if purchase.status == Status.OPEN:
            purchase.status = Status.EXPIRED
            purchase.save(update_fields=["status", "updated_at"])
            return "checkout expired", purchase
        return f"checkout expired, purchase already {purchase.status}", purchase
    return _settle_locked(purchase, session), purchase


def _charge_purchase(event: PaymentEvent, obj: dict[str, Any]) -> Purchase:
    """The purchase a charge or a dispute is about: by the purchase id in its metadata, else by
    its payment intent or charge id. Raises Unmatched (retry) while it may still appear."""
    candidates: list[Any] = []
    ref = (obj.get("metadata") or {}).get("purchase_id")
    if ref:
        candidates.append(Purchase.objects.filter(pk=ref) if _is_uuid(ref) else None)
    intent = obj.get("payment_intent")
    if isinstance(intent, dict):
        intent = intent.get("id")
    if intent:
        candidates.append(Purchase.objects.filter(payment_intent_id=intent))
    charge = obj.get("charge") if obj.get("object") == "dispute" else obj.get("id")
    if isinstance(charge, dict):
        charge = charge.get("id")
    if charge:
        candidates.append(Purchase.objects.filter(charge_id=charge))
    for queryset in candidates:
        if queryset is None:
            continue
        found = queryset.values_list("pk", flat=True).first()
        if found is not None:
            purchase = _locked(found)
            if purchase is not None:
                return purchase
    if event.created < timezone.now() - UNMATCHED_RETRY_WINDOW:
        raise _NotOurs
    raise Unmatched(f"no purchase matches {obj.get('object')} {obj.get('id')} yet")


class _NotOurs(Exception):
    pass


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _on_refund(event: PaymentEvent) -> Handled:
    charge = event.payload["data"]["object"]
    try:
        purchase = _charge_purchase(event, charge)
    except _NotOurs:
        return "no purchase matches this charge: not ours", None
    return _refund_locked(purchase, charge.get("amount_refunded") or 0, charge), purchase


def _on_dispute(event: PaymentEvent) -> Handled:
    dispute = event.payload["data"]["object"]
    try:
        purchase = _charge_purchase(event, dispute)
    except _NotOurs:
        return "no purchase matches this dispute: not ours", None
    dispute_id = str(dispute.get("id") or "")
    if purchase.dispute_settled_at is not None and purchase.dispute_id == dispute_id:
        return f"dispute already closed ({purchase.dispute_status})", purchase
    purchase.dispute_id = dispute_id
    if event.type == "charge.dispute.created":
        purchase.dispute_status = Dispute.OPEN
    else:  # closed: won (or an inquiry closed with a warning: no money lost), else lost
        won = dispute.get("status") in ("won", "warning_closed")
        purchase.dispute_status = Dispute.WON if won else Dispute.LOST
    before = purchase.dispute_tokens_taken
    _take_backs_locked(purchase)
    if event.type == "charge.dispute.created":
        taken = purchase.dispute_tokens_taken - before
        return f"dispute opened: {taken} token(s) held back", purchase
    return f"dispute {purchase.dispute_status}", purchase


HANDLERS = {
    "checkout.session.completed": _on_session,
    "checkout.session.async_payment_succeeded": _on_session,
    "checkout.session.async_payment_failed": _on_session,
    "checkout.session.expired": _on_session,
    "charge.refunded": _on_refund,
    "charge.dispute.created": _on_dispute,
    "charge.dispute.closed": _on_dispute,
}


# --- staff and the scheduler -----------------------------------------------------------------


def purchase_recheck(*, purchase: Purchase) -> Purchase:
    """Ask the provider about an open purchase and settle it as the success page would."""
    if not purchase.checkout_session_id:
        return purchase
    session = provider_get().checkout_get(purchase.checkout_session_id)
    with transaction.atomic(durable=True):
        locked = _locked(purchase.pk)
        assert locked is not None
        _settle_locked(locked, session)
    return locked


def purchase_grant_reviewed(*, purchase: Purchase, actor: User) -> Purchase:
    """Staff checked a paid purchase held for review (what the provider reported did not match
    what was sold) and grant its pack: once, like any grant of a purchase."""
    with transaction.atomic(durable=True):
        locked = _locked(purchase.pk)
        if locked is None or locked.status != Status.REVIEW:
            raise PurchaseRefused(f"Purchase {purchase.pk} is not waiting for a review.")
        ledger.purchase_grant(
            account_id=locked.account_id,
            purchase=locked.pk,
            amount=locked.tokens,
            reason=f"Bought {locked.pack_name}: {locked.price} (granted after a review)",
            actor=actor,
        )
        locked.status, locked.paid_at = Status.PAID, timezone.now()
        locked.save(update_fields=["status", "paid_at", "updated_at"])
        if locked.amount_refunded or locked.dispute_status:
            _take_backs_locked(locked)
    logger.info("purchase %s granted after a review by %s", locked.pk, actor.email)
    return locked


def unspent_tokens(*, purchase: Purchase) -> int:
    """Tokens of this purchase the candidate still has and has not reserved."""
    _granted, left = ledger.purchase_totals(purchase=purchase.pk)
    account = purchase.account
    account.refresh_from_db(fields=["balance", "held"])
    return max(0, min(left, account.available))


def purchase_refund_unspent(*, purchase: Purchase, actor: User) -> Purchase:
    """Refund the money of the tokens the candidate has not spent (staff, from the admin), and
    take those tokens back at once (the provider's charge.refunded event then changes nothing:
    refunds are cumulative). Raises PurchaseRefused or ProviderError."""
    if purchase.status != Status.PAID:
        raise PurchaseRefused(f"Purchase {purchase.pk} is {purchase.status}, not paid.")
    unspent = unspent_tokens(purchase=purchase)
    if not unspent:
        raise PurchaseRefused(f"Purchase {purchase.pk} has no unspent tokens to refund.")
    left_to_refund = purchase.amount - purchase.amount_refunded
    amount = (
        left_to_refund
        if unspent >= purchase.tokens - purchase.refund_tokens_owed
        else min(left_to_refund, purchase.amount * unspent // purchase.tokens)
    )
    if amount <= 0:
        raise PurchaseRefused(f"Purchase {purchase.pk}: nothing left to refund.")
    provider = provider_get()
    key = f"mockroom-refund-{purchase.pk}-{purchase.amount_refunded + amount}"
    refund = provider.refund_create(purchase=purchase, amount=amount, key=key)
    charge_id = refund.get("charge") or purchase.charge_id
    charge: dict[str, Any] = {}
    if charge_id:
        try:
            charge = provider.charge_get(charge_id)
        except ProviderError as exc:
            # The money is refunded: take the tokens back now, for at least this refund (the
            # charge.refunded event brings the cumulative amount later).
            logger.warning("purchase %s: refunded, charge not read: %s", purchase.pk, exc)
    refunded = charge.get("amount_refunded", purchase.amount_refunded + amount)
    logger.info(
        "purchase %s: %s refunded by %s (%d unspent token(s))",
        purchase.pk,
        money(amount, purchase.currency),
        actor.email,
        unspent,
    )
    return refund_apply(
        purchase_id=purchase.pk, amount_refunded=refunded, charge=charge, actor=actor
    )


# Open purchases are asked about again after this (a webhook that never came); a paid one still
# not granted after ALERT_AFTER is reported to staff (once).
RECHECK_AFTER = timedelta(minutes=5)
ALERT_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class RecheckReport:
    checked: int
    granted: int
    # Paid and still not granted after ALERT_AFTER, not reported yet: one line each.
    unfulfilled: list[str]


def purchases_recheck(*, now: datetime | None = None) -> RecheckReport:
    """Re-check open purchases with the provider (granting those it says are paid), then list,
    once each, the paid purchases still not granted after ALERT_AFTER: those whose payment does
    not match what was sold, and those whose paid event keeps failing to process."""
    now = now or timezone.now()
    due = Purchase.objects.filter(
        status__in=[Status.OPEN, Status.PROCESSING],
        checkout_session_id__isnull=False,
        created_at__lte=now - RECHECK_AFTER,
        created_at__gte=now - CHECKOUT_LIFETIME - timedelta(days=1),
    ).exclude(provider="none")
    checked = granted = 0
    for purchase in due.order_by("created_at")[:200]:
        checked += 1
        try:
            settled = purchase_recheck(purchase=purchase)
        except ProviderError as exc:
            logger.warning("purchase %s not re-checked: %s", purchase.pk, exc)
            continue
        except Exception:
            # One purchase that cannot be settled (the bug that makes its event fail too) must
            # not stop the others, nor the alert about it below.
            logger.exception("purchase %s could not be settled on re-check", purchase.pk)
            continue
        granted += settled.status == Status.PAID
    unfulfilled: list[str] = []
    for purchase in Purchase.objects.filter(
        status=Status.REVIEW, alerted_at__isnull=True, updated_at__lte=now - ALERT_AFTER
    ).select_related("account"):
        unfulfilled.append(f"purchase {purchase.pk} <{purchase.account.email}>: {purchase.problem}")
        Purchase.objects.filter(pk=purchase.pk).update(alerted_at=now)
    stuck = PaymentEvent.objects.filter(
        processed_at__isnull=True,
        type__in=["checkout.session.completed", "checkout.session.async_payment_succeeded"],
        received_at__lte=now - ALERT_AFTER,
    )
    for event in stuck:
        reference = event.payload["data"]["object"].get("client_reference_id")
        alerted = (
            Purchase.objects.filter(pk=reference, alerted_at__isnull=True)
            if _is_uuid(str(reference))
            else Purchase.objects.none()
        )
        if alerted.filter(status__in=[Status.OPEN, Status.PROCESSING]).update(alerted_at=now):
            unfulfilled.append(
                f"purchase {reference}: event {event.pk} ({event.type}) not processed after "
                f"{event.attempts} attempt(s): {event.last_error[:200]}"
            )
    return RecheckReport(checked=checked, granted=granted, unfulfilled=unfulfilled)
