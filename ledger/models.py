"""The token ledger: accounts, holds (reservations) and the append-only list of entries.

Only ledger/services.py writes these rows. The database enforces what must never happen:
a balance below what is held, a negative hold total, two entries with one version of an account,
two resolutions of one hold, and (PostgreSQL trigger) any UPDATE or DELETE of an entry.
"""

from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Upper


class LedgerEntryImmutable(Exception):
    """Raised when code tries to change or delete a ledger entry."""


class TokenAccount(models.Model):
    """One per user. `balance` is what the user owns; `held` is reserved by pending holds."""

    # SET_NULL, not CASCADE: deleting a user keeps the account, and so its history.
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="token_account",
    )
    # A snapshot, so history stays searchable by email after the user is gone.
    email = models.EmailField(db_index=True)
    balance = models.IntegerField(default=0)
    held = models.IntegerField(default=0)
    # Incremented by every entry: the entries of an account are numbered 1..version, gapless.
    version = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(held__gte=0), name="ledger_account_held_gte_0"),
            models.CheckConstraint(
                condition=Q(balance__gte=F("held")), name="ledger_account_balance_gte_held"
            ),
        ]
        permissions = [("grant_tokens", "Can grant tokens and refund debits")]
        # Staff search by email ignores case: email__iexact is UPPER(email) = UPPER(%s).
        indexes = [models.Index(Upper("email"), name="ledger_account_email_upper")]

    def __str__(self) -> str:
        return f"{self.email} ({self.balance} tokens)"

    @property
    def available(self) -> int:
        return self.balance - self.held


class Hold(models.Model):
    """A reservation of tokens while a purchase is prepared: pending, then resolved once."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        CAPTURED = "captured", "Captured"
        RELEASED = "released", "Released"
        EXPIRED = "expired", "Expired"

    account = models.ForeignKey(TokenAccount, on_delete=models.PROTECT, related_name="holds")
    # The idempotency key the caller sends with each purchase (one per click, not per retry).
    request_id = models.CharField(max_length=64)
    # What the request asked for (e.g. "<product>:<its id>"): the same key with other
    # parameters is a conflict, not a replay.
    purpose = models.CharField(max_length=200)
    amount = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=10, choices=Status, default=Status.PENDING)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Why a hold was released (the generation error), for staff.
    resolution_note = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "request_id"], name="ledger_hold_request_id_unique_per_account"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="ledger_hold_amount_gt_0"),
        ]
        indexes = [
            # The sweeper's query: pending holds past their expiry.
            models.Index(
                fields=["expires_at"],
                condition=Q(status="pending"),
                name="ledger_hold_pending_expiry",
            ),
            models.Index(fields=["status", "-created_at"], name="ledger_hold_status_newest"),
            models.Index(fields=["request_id"], name="ledger_hold_request_id"),
        ]

    def __str__(self) -> str:
        return f"Hold {self.pk} ({self.status}) {self.request_id}"


_PURCHASE_KINDS = ["purchase", "reversal", "reinstate"]


class LedgerEntryQuerySet(models.QuerySet["LedgerEntry"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise LedgerEntryImmutable("Ledger entries are append-only: they cannot be updated.")

    def delete(self) -> NoReturn:
        raise LedgerEntryImmutable("Ledger entries are append-only: they cannot be deleted.")


class LedgerEntry(models.Model):
    """One change of an account: immutable, numbered, with the balance it left behind."""

    class Kind(models.TextChoices):
        GRANT = "grant", "Grant"
        HOLD = "hold", "Hold"
        DEBIT = "debit", "Debit"
        RELEASE = "release", "Release"
        EXPIRE = "expire", "Expire"
        REFUND = "refund", "Refund"
        ADJUSTMENT = "adjustment", "Adjustment"
        # Tokens paid for by an external purchase (`purchase` names it; one per purchase), taken
        # back when the payment is refunded or disputed (never more than is unspent), and given
        # back when a dispute is won (exactly what the dispute took).
        PURCHASE = "purchase", "Purchase"
        REVERSAL = "reversal", "Taken back"
        REINSTATE = "reinstate", "Given back"
        # A zero-delta note. No code writes it any more; entries written with it stay, as all
        # history does (the value is what they were stored with).
        NOTE = "pool_reset", "Note"

    class Source(models.TextChoices):
        SIGNUP = "signup", "Signup"
        WEB = "web", "Web"
        ADMIN = "admin", "Admin"
        COMMAND = "command", "Command"
        SYSTEM = "system", "System"
        PAYMENT = "payment", "Payment"

    RESOLVING_KINDS = (Kind.DEBIT, Kind.RELEASE, Kind.EXPIRE)

    account = models.ForeignKey(TokenAccount, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=12, choices=Kind)
    balance_delta = models.IntegerField(default=0)
    held_delta = models.IntegerField(default=0)
    balance_after = models.IntegerField()
    held_after = models.IntegerField()
    version = models.PositiveBigIntegerField()
    # No database constraint and no cascade: deleting a user never touches ledger history.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_label = models.CharField(max_length=254, blank=True)
    source = models.CharField(max_length=10, choices=Source)
    reason = models.CharField(max_length=500, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    hold = models.ForeignKey(
        Hold, on_delete=models.PROTECT, null=True, blank=True, related_name="entries"
    )
    # Refunds and adjustments name the entry they correct.
    corrects = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="corrections"
    )
    # The external purchase a purchase, reversal or reinstate entry belongs to: an id the
    # selling app owns (the ledger knows no payment provider), so no foreign key.
    purchase = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    PURCHASE_KINDS = (Kind.PURCHASE, Kind.REVERSAL, Kind.REINSTATE)

    objects = LedgerEntryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "ledger entries"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "version"], name="ledger_entry_version_unique_per_account"
            ),
            models.UniqueConstraint(
                fields=["hold"],
                condition=Q(kind__in=["debit", "release", "expire"]),
                name="ledger_entry_one_resolution_per_hold",
            ),
            models.UniqueConstraint(
                fields=["corrects"],
                condition=Q(kind="refund"),
                name="ledger_entry_one_refund_per_entry",
            ),
            models.CheckConstraint(
                condition=Q(balance_after__gte=F("held_after")) & Q(held_after__gte=0),
                name="ledger_entry_after_is_valid",
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="ledger_entry_version_gte_1"),
            # One grant per purchase, whoever fulfils it (the webhook, its retries, the success
            # page) and however many times.
            models.UniqueConstraint(
                fields=["purchase"],
                condition=Q(kind="purchase"),
                name="ledger_entry_one_grant_per_purchase",
            ),
            # A purchase's entries name it; no other entry names one.
            models.CheckConstraint(
                condition=Q(kind__in=_PURCHASE_KINDS, purchase__isnull=False)
                | (~Q(kind__in=_PURCHASE_KINDS) & Q(purchase__isnull=True)),
                name="ledger_entry_purchase_kinds_name_a_purchase",
            ),
        ]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="ledger_entry_newest"),
            models.Index(fields=["account", "-version"], name="ledger_entry_account_newest"),
            models.Index(fields=["kind", "-created_at"], name="ledger_entry_kind_newest"),
            models.Index(fields=["source", "-created_at"], name="ledger_entry_source_newest"),
            models.Index(fields=["request_id"], name="ledger_entry_request_id"),
            models.Index(
                fields=["purchase"],
                name="ledger_entry_purchase",
                condition=Q(purchase__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.balance_delta:+d} -> {self.balance_after}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise LedgerEntryImmutable("Ledger entries are append-only: they cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise LedgerEntryImmutable("Ledger entries are append-only: they cannot be deleted.")

    @property
    def balance_before(self) -> int:
        return self.balance_after - self.balance_delta
