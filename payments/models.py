"""Purchases of token packs and the payment provider's events about them.

A Purchase is created before the candidate is sent to the provider's checkout, and keeps a
snapshot of its pack. What the payment did to the candidate's tokens is in the ledger (entries
naming the purchase, written only by ledger.services); the purchase keeps what the provider said
(paid, refunded so far, disputed) and what could not be taken back (the shortfall).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from ledger.models import TokenAccount


def money(amount: int, currency: str) -> str:
    """Minor units as people read them: 12.00 USD (the packs' currencies have two decimals)."""
    return f"{amount // 100}.{amount % 100:02d} {currency.upper()}"


class Purchase(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Checkout open"
        PROCESSING = "processing", "Payment processing"  # a delayed method (a bank debit)
        PAID = "paid", "Paid"
        FAILED = "failed", "Payment failed"
        EXPIRED = "expired", "Checkout expired"
        # Paid, but what the provider reports does not match the purchase: not granted.
        REVIEW = "review", "Needs review"

    class Dispute(models.TextChoices):
        NONE = "", "None"
        OPEN = "open", "Open"
        WON = "won", "Won"
        LOST = "lost", "Lost"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # SET_NULL, not PROTECT: a candidate who bought tokens can still delete their account; the
    # purchase stays (a payment record), its token account keeps the email it was made under.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="purchases",
    )
    account = models.ForeignKey(TokenAccount, on_delete=models.PROTECT, related_name="+")
    provider = models.CharField(max_length=10)
    # The pack as sold (a snapshot).
    pack_code = models.CharField(max_length=32)
    pack_name = models.CharField(max_length=60)
    tokens = models.PositiveIntegerField()
    amount = models.PositiveIntegerField(help_text="In the currency's minor units (cents).")
    currency = models.CharField(max_length=3)

    status = models.CharField(max_length=10, choices=Status, default=Status.OPEN)
    problem = models.CharField(max_length=500, blank=True)
    checkout_session_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    checkout_url = models.URLField(max_length=2000, blank=True)
    checkout_expires_at = models.DateTimeField(null=True, blank=True)
    payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    charge_id = models.CharField(max_length=255, blank=True, db_index=True)
    receipt_url = models.URLField(max_length=2000, blank=True)

    # Refunds: the provider's cumulative amount refunded, and the tokens owed back for it so far
    # (taken back, or short because they were spent).
    amount_refunded = models.PositiveIntegerField(default=0)
    refund_tokens_owed = models.PositiveIntegerField(default=0)
    refund_tokens_taken = models.PositiveIntegerField(default=0)
    # Disputes (chargebacks): what the dispute took back, given back if it is won.
    dispute_id = models.CharField(max_length=255, blank=True)
    dispute_status = models.CharField(
        max_length=4, choices=Dispute, default=Dispute.NONE, blank=True
    )
    dispute_tokens_taken = models.PositiveIntegerField(default=0)
    dispute_taken_at = models.DateTimeField(null=True, blank=True)
    dispute_settled_at = models.DateTimeField(null=True, blank=True)
    # Tokens that should have been taken back but had been spent already: for staff to see.
    shortfall = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A double click reuses the open checkout instead of starting a second one.
            models.UniqueConstraint(
                fields=["user", "pack_code"],
                condition=Q(status="open"),
                name="payments_one_open_purchase_per_pack",
            ),
            models.CheckConstraint(condition=Q(tokens__gt=0), name="payments_tokens_gt_0"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payments_amount_gt_0"),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="payments_status_created"),
            models.Index(fields=["user", "-created_at"], name="payments_user_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.pack_name} ({self.tokens} tokens, {self.price}) {self.status}"

    @property
    def price(self) -> str:
        return money(self.amount, self.currency)

    @property
    def refunded(self) -> str:
        return money(self.amount_refunded, self.currency)

    @property
    def is_open(self) -> bool:
        return self.status in (self.Status.OPEN, self.Status.PROCESSING)


class PaymentEvent(models.Model):
    """An event the provider sent to the webhook, stored by its id before it is processed: a
    replay is a no-op, and one whose processing failed stays for the provider's retry (or
    staff's "reprocess")."""

    id = models.CharField(max_length=255, primary_key=True)
    type = models.CharField(max_length=100, db_index=True)
    livemode = models.BooleanField(default=False)
    created = models.DateTimeField(help_text="When the provider created the event.")
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    outcome = models.CharField(max_length=200, blank=True)
    purchase = models.ForeignKey(
        Purchase, on_delete=models.PROTECT, null=True, blank=True, related_name="events"
    )

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["processed_at"], name="payments_event_processed")]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"
