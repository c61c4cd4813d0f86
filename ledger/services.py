"""The only code that writes token balances and ledger entries.

A purchase is paid in two short transactions, like a card authorisation:

    hold_reserve   lock the account, check balance - held >= 1, held += 1, Hold(pending), HOLD entry
    (prepare)      no transaction open: making what is bought can take seconds and can fail
    hold_capture   lock the account, Hold pending -> captured, balance -= 1, held -= 1, DEBIT entry,
                   and the caller's record (what was bought) in the same transaction
    hold_release   on failure: Hold pending -> released, held -= 1, RELEASE entry; no charge
    hold_expire_due   the sweeper: pending holds past expires_at -> expired; nothing is ever lost

Every function owns one durable transaction, locks the account first and the hold second (one
fixed order, so two resolvers cannot deadlock), and writes its entry in that transaction. Some
take part in their caller's transaction instead: account_open, account_grant and the purchase_*
functions, so that the caller's own record (a new user; the welcome-grant decision; a purchase)
commits with the entry or not at all.
Refusals are exceptions from ledger.exceptions, raised after the transaction has ended.
"""

from __future__ import annotations

import copy
import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, overload

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from ledger.exceptions import (
    HoldExpired,
    HoldNotPending,
    InsufficientTokens,
    InvalidAmount,
    LedgerError,
    NotCorrectable,
    NotRefundable,
    ReasonRequired,
    RequestAlreadyFailed,
    RequestConflict,
    RequestInProgress,
)
from ledger.models import Hold, LedgerEntry, TokenAccount

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)

Kind = LedgerEntry.Kind
Source = LedgerEntry.Source


@dataclass(frozen=True)
class Reservation:
    hold: Hold
    # True when the request id had already been captured: the caller returns the stored result.
    replay: bool


@dataclass(frozen=True)
class Capture[T]:
    entry: LedgerEntry  # the debit
    record: T  # what the caller's `record` stored with it (None without one)


# --- helpers (called only inside a service's transaction) -----------------------------------
#
# The statements every purchase runs (the lock, a change with its entry, a new hold, the
# capture) are written out: each runs twice a question, and the ORM spends several times more
# CPU composing them than the database spends running them. Names come from the models, values
# are parameters; what the ORM would do (auto_now, defaults) is done here, and the instances
# returned are the ones the ORM would have returned.

_ACCOUNT_FIELDS = [field.attname for field in TokenAccount._meta.concrete_fields]
_LOCK_SQL = "SELECT {columns} FROM {table} WHERE {pk} = %s".format(  # noqa: S608
    columns=", ".join(str(field.column) for field in TokenAccount._meta.concrete_fields),
    table=TokenAccount._meta.db_table,
    pk=TokenAccount._meta.pk.column,
)

# PostgreSQL: the account's change and its entry in one statement (one round trip).
_APPEND_SQL = f"""
WITH account AS (
    UPDATE {TokenAccount._meta.db_table}
    SET balance = %(balance)s, held = %(held)s, version = %(version)s, updated_at = %(now)s
    WHERE id = %(account)s
    RETURNING id
)
INSERT INTO {LedgerEntry._meta.db_table} (
    account_id, kind, balance_delta, held_delta, balance_after, held_after, version, actor_id,
    actor_label, source, reason, request_id, hold_id, corrects_id, purchase, created_at
)
SELECT account.id, %(kind)s, %(balance_delta)s, %(held_delta)s, %(balance)s, %(held)s,
    %(version)s, %(actor)s, %(actor_label)s, %(source)s, %(reason)s, %(request_id)s, %(hold)s,
    %(corrects)s, %(purchase)s, %(now)s
FROM account
RETURNING id
"""  # noqa: S608

# PostgreSQL: a new hold, unless the account already has one with this request id (then
# nothing is inserted, and the caller looks at that one).
_HOLD_INSERT_SQL = f"""
INSERT INTO {Hold._meta.db_table} (
    account_id, request_id, purpose, amount, status, expires_at, created_at, resolved_at,
    resolution_note
)
VALUES (%(account)s, %(request_id)s, %(purpose)s, %(amount)s, %(status)s, %(expires_at)s,
    %(now)s, NULL, '')
ON CONFLICT (account_id, request_id) DO NOTHING
RETURNING id
"""  # noqa: S608

# PostgreSQL: pending and in time -> captured.
_CAPTURE_SQL = f"""
UPDATE {Hold._meta.db_table} SET status = %s, resolved_at = %s, resolution_note = ''
WHERE id = %s AND status = %s AND expires_at > %s
"""  # noqa: S608


def _fast() -> bool:
    """Whether the written-out statements apply: PostgreSQL (elsewhere, SQLite for `make run`,
    the ORM writes the same rows)."""
    return connection.vendor == "postgresql"


def _loaded[M: (TokenAccount, Hold, LedgerEntry)](instance: M, pk: int) -> M:
    """An instance built here, as the ORM leaves one it has just saved."""
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = connection.alias
    return instance


def _lock(account_id: int) -> TokenAccount:
    """The account, locked until the transaction ends (FOR UPDATE where the database has row
    locks; SQLite's IMMEDIATE transactions serialise writers instead)."""
    sql = _LOCK_SQL
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, [account_id])
        row = cursor.fetchone()
    if row is None:
        raise TokenAccount.DoesNotExist(f"No token account {account_id}.")
    return TokenAccount.from_db(connection.alias, _ACCOUNT_FIELDS, row)


def _append(
    *,
    account: TokenAccount,
    kind: str,
    source: str,
    balance_delta: int = 0,
    held_delta: int = 0,
    actor: User | None = None,
    reason: str = "",
    request_id: str = "",
    hold: Hold | None = None,
    corrects: LedgerEntry | None = None,
    purchase: uuid.UUID | None = None,
) -> LedgerEntry:
    """Apply a change to a locked account and write its entry: the one place both happen."""
    account.balance += balance_delta
    account.held += held_delta
    account.version += 1
    entry = LedgerEntry(
        account=account,
        kind=kind,
        balance_delta=balance_delta,
        held_delta=held_delta,
        balance_after=account.balance,
        held_after=account.held,
        version=account.version,
        actor=actor,
        actor_label=actor.email if actor is not None else Source(source).label,
        source=source,
        reason=reason[:500],
        request_id=request_id,
        hold=hold,
        corrects=corrects,
        purchase=purchase,
    )
    if not _fast():
        account.save(update_fields=["balance", "held", "version", "updated_at"])
        entry.save(force_insert=True)
        return entry
    now = timezone.now()  # auto_now and auto_now_add, as the ORM sets them
    account.updated_at = entry.created_at = now
    params: dict[str, Any] = {
        "account": account.pk,
        "balance": account.balance,
        "held": account.held,
        "version": account.version,
        "now": now,
        "kind": kind,
        "balance_delta": balance_delta,
        "held_delta": held_delta,
        "actor": entry.actor_id,
        "actor_label": entry.actor_label,
        "source": source,
        "reason": entry.reason,
        "request_id": request_id,
        "hold": entry.hold_id,
        "corrects": entry.corrects_id,
        "purchase": purchase,
    }
    with connection.cursor() as cursor:
        cursor.execute(_APPEND_SQL, params)
        (pk,) = cursor.fetchone()
    return _loaded(entry, pk)


def _captured(*, hold: Hold, now: datetime) -> bool:
    """Pending and in time -> captured, in one conditional statement: whether it was."""
    if not _fast():
        won = Hold.objects.filter(pk=hold.pk, status=Hold.Status.PENDING, expires_at__gt=now)
        return bool(won.update(status=Hold.Status.CAPTURED, resolved_at=now, resolution_note=""))
    with connection.cursor() as cursor:
        cursor.execute(_CAPTURE_SQL, [Hold.Status.CAPTURED, now, hold.pk, Hold.Status.PENDING, now])
        return bool(cursor.rowcount)


def _hold_create(
    *, account: TokenAccount, request_id: str, purpose: str, amount: int, expires_at: datetime
) -> Hold | None:
    """A new pending hold on the locked account; None, inserting nothing, if the account has
    one with this request id already."""
    hold = Hold(
        account=account,
        request_id=request_id,
        purpose=purpose,
        amount=amount,
        status=Hold.Status.PENDING,
        expires_at=expires_at,
    )
    if not _fast():
        if Hold.objects.filter(account=account, request_id=request_id).exists():
            return None
        hold.save(force_insert=True)
        return hold
    hold.created_at = timezone.now()
    params: dict[str, Any] = {
        "account": account.pk,
        "request_id": request_id,
        "purpose": purpose,
        "amount": amount,
        "status": hold.status,
        "expires_at": expires_at,
        "now": hold.created_at,
    }
    with connection.cursor() as cursor:
        cursor.execute(_HOLD_INSERT_SQL, params)
        row = cursor.fetchone()
    return _loaded(hold, row[0]) if row is not None else None


def _resolve(
    *, account: TokenAccount, hold: Hold, status: str, now: datetime, note: str = ""
) -> bool:
    """Move a pending hold to a final status. Conditional: exactly one resolver wins."""
    won = Hold.objects.filter(pk=hold.pk, status=Hold.Status.PENDING).update(
        status=status, resolved_at=now, resolution_note=note[:500]
    )
    if won:
        hold.status, hold.resolved_at, hold.resolution_note = status, now, note[:500]
    return bool(won)


def _expire_due(account: TokenAccount, now: datetime) -> int:
    due = list(
        Hold.objects.filter(account=account, status=Hold.Status.PENDING, expires_at__lte=now)
    )
    for hold in due:
        if _resolve(account=account, hold=hold, status=Hold.Status.EXPIRED, now=now):
            _append(
                account=account,
                kind=Kind.EXPIRE,
                source=Source.SYSTEM,
                held_delta=-hold.amount,
                reason="Reservation expired before delivery; not charged.",
                request_id=hold.request_id,
                hold=hold,
            )
    return len(due)


# The most tokens one grant or adjustment may move (a typo guard; balances are 32-bit).
MAX_AMOUNT = 1_000_000


def _positive_amount(amount: object) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise InvalidAmount(
            f"The amount must be a whole number from 1 to {MAX_AMOUNT:,}, not {amount!r}."
        )
    return amount


def _required_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ReasonRequired("A reason is required.")
    return reason


# --- accounts --------------------------------------------------------------------------------


@transaction.atomic
def account_open(
    *, user: User, welcome_tokens: int | None = None, source: str = Source.SIGNUP
) -> TokenAccount:
    """Create the user's account with its welcome grant.

    Not durable on purpose: signup creates the user and this account in one transaction.
    Opening an account that exists returns it unchanged.
    """
    account, created = TokenAccount.objects.get_or_create(user=user, defaults={"email": user.email})
    tokens = settings.WELCOME_TOKENS if welcome_tokens is None else welcome_tokens
    if created and tokens > 0:
        # No lock needed: no other transaction can see the row we just inserted.
        _append(
            account=account,
            kind=Kind.GRANT,
            source=source,
            balance_delta=tokens,
            actor=user,
            reason="Welcome tokens",
        )
    return account


def account_get_or_open(*, user: User) -> TokenAccount:
    """The user's account, opened (without a welcome grant) if the user never had one."""
    try:
        return user.token_account
    except TokenAccount.DoesNotExist:
        return account_open(user=user, welcome_tokens=0, source=Source.SYSTEM)


# --- grants, refunds, adjustments ------------------------------------------------------------


@transaction.atomic
def account_grant(
    *, account: TokenAccount, amount: int, actor: User | None, source: str, reason: str
) -> LedgerEntry:
    """Add tokens to an account. Runs in the caller's transaction when there is one (the
    account's row lock is then held until the caller commits: keep that transaction short)."""
    amount = _positive_amount(amount)
    reason = _required_reason(reason)
    locked = _lock(account.pk)
    return _append(
        account=locked,
        kind=Kind.GRANT,
        source=source,
        balance_delta=amount,
        actor=actor,
        reason=reason,
    )


def account_refund(
    *, entry: LedgerEntry, actor: User | None, source: str, reason: str
) -> LedgerEntry:
    """Give back what a debit took, as a new entry naming the debit. Once per debit."""
    reason = _required_reason(reason)
    with transaction.atomic(durable=True):
        locked = _lock(entry.account_id)
        refusal: LedgerError | None = None
        if entry.kind != Kind.DEBIT:
            refusal = NotRefundable(
                f"Only a debit can be refunded; entry {entry.pk} is a {entry.kind}."
            )
        elif LedgerEntry.objects.filter(corrects=entry, kind=Kind.REFUND).exists():
            refusal = NotRefundable(f"Entry {entry.pk} was already refunded.")
        else:
            return _append(
                account=locked,
                kind=Kind.REFUND,
                source=source,
                balance_delta=-entry.balance_delta,
                actor=actor,
                reason=reason,
                request_id=entry.request_id,
                hold=None,
                corrects=entry,
            )
    raise refusal


@transaction.atomic(durable=True)
def account_adjust(
    *, corrects: LedgerEntry, delta: int, actor: User | None, source: str, reason: str
) -> LedgerEntry:
    """A staff correction of an earlier entry (e.g. a grant made in error), as a new entry."""
    if isinstance(delta, bool) or not isinstance(delta, int) or delta == 0:
        raise InvalidAmount(f"The adjustment must be a non-zero whole number, not {delta!r}.")
    _positive_amount(abs(delta))
    reason = _required_reason(reason)
    if corrects.pk is None:
        raise NotCorrectable("An adjustment must name the entry it corrects.")
    locked = _lock(corrects.account_id)
    if locked.balance + delta < locked.held:
        raise InsufficientTokens(needed=-delta, available=locked.available)
    return _append(
        account=locked,
        kind=Kind.ADJUSTMENT,
        source=source,
        balance_delta=delta,
        actor=actor,
        reason=reason,
        corrects=corrects,
    )


# --- purchases: tokens paid for outside the ledger -------------------------------------------
#
# The app that sells tokens owns the purchase (its id, what was paid, its refunds); the ledger
# owns what the purchase did to the balance, in entries naming the purchase: one PURCHASE grant,
# REVERSAL entries taking tokens back (a refund, a dispute), REINSTATE entries giving back what a
# dispute took. Per purchase, granted - reversed + reinstated stays between 0 and the grant
# (ledger_verify proves it). These run in the caller's transaction, like account_grant, so that
# the caller's record of the purchase commits with the entries or not at all.


@dataclass(frozen=True)
class TakeBack:
    entry: LedgerEntry | None  # None when nothing could be taken
    wanted: int
    taken: int

    @property
    def shortfall(self) -> int:
        """Tokens wanted back that were already spent (or are held by a pending question)."""
        return self.wanted - self.taken


def purchase_totals(*, purchase: uuid.UUID) -> tuple[int, int]:
    """(tokens the purchase granted, tokens of it the account still has from it: the grant less
    what was taken back, plus what was given back)."""
    totals = LedgerEntry.objects.filter(purchase=purchase).aggregate(
        granted=Sum("balance_delta", filter=Q(kind=Kind.PURCHASE), default=0),
        net=Sum("balance_delta", default=0),
    )
    return totals["granted"], totals["net"]


@transaction.atomic
def purchase_grant(
    *, account_id: int, purchase: uuid.UUID, amount: int, reason: str, actor: User | None = None
) -> LedgerEntry | None:
    """The tokens an external purchase paid for: once per purchase. None, writing nothing, when
    the purchase was granted already (the database also refuses a second grant). `actor`: the
    staff member who granted it by hand (after reviewing the payment)."""
    amount = _positive_amount(amount)
    reason = _required_reason(reason)
    locked = _lock(account_id)
    # Under the account's lock: a grant of this purchase committed meanwhile is seen here.
    if LedgerEntry.objects.filter(purchase=purchase, kind=Kind.PURCHASE).exists():
        return None
    return _append(
        account=locked,
        kind=Kind.PURCHASE,
        source=Source.PAYMENT if actor is None else Source.ADMIN,
        balance_delta=amount,
        actor=actor,
        reason=reason,
        purchase=purchase,
    )


@transaction.atomic
def purchase_take_back(
    *, account_id: int, purchase: uuid.UUID, wanted: int, reason: str, actor: User | None = None
) -> TakeBack:
    """Take back up to `wanted` tokens of a purchase: never more than the account has unspent
    (its balance less what pending holds reserve: a balance never goes below zero) nor than it
    still has from this purchase. What could not be taken is the caller's shortfall to record."""
    wanted = _positive_amount(wanted)
    reason = _required_reason(reason)
    locked = _lock(account_id)
    granted, net = purchase_totals(purchase=purchase)
    if not granted:
        raise NotCorrectable(f"Purchase {purchase} was never granted: nothing to take back.")
    taken = max(0, min(wanted, locked.available, net))
    entry = None
    if taken:
        entry = _append(
            account=locked,
            kind=Kind.REVERSAL,
            source=Source.PAYMENT if actor is None else Source.ADMIN,
            balance_delta=-taken,
            actor=actor,
            reason=reason,
            purchase=purchase,
        )
    return TakeBack(entry=entry, wanted=wanted, taken=taken)


@transaction.atomic
def purchase_reinstate(
    *, account_id: int, purchase: uuid.UUID, amount: int, reason: str
) -> LedgerEntry:
    """Give back tokens taken from a purchase (a dispute won): never past what it granted."""
    amount = _positive_amount(amount)
    reason = _required_reason(reason)
    locked = _lock(account_id)
    granted, net = purchase_totals(purchase=purchase)
    if net + amount > granted:
        raise NotCorrectable(
            f"Purchase {purchase} granted {granted} token(s) and the account has {net} of them: "
            f"giving back {amount} would exceed the grant."
        )
    return _append(
        account=locked,
        kind=Kind.REINSTATE,
        source=Source.PAYMENT,
        balance_delta=amount,
        reason=reason,
        purchase=purchase,
    )


# --- the two-phase charge --------------------------------------------------------------------


def hold_reserve(
    *,
    account: TokenAccount,
    request_id: str,
    purpose: str,
    actor: User | None,
    source: str = Source.WEB,
    amount: int = 1,
    ttl_seconds: int | None = None,
) -> Reservation:
    """Phase one: reserve `amount` tokens for one request id, or say why not.

    The same request id again returns the captured hold as a replay (no new charge); raises
    RequestInProgress while it is pending, RequestConflict for another purpose, and
    RequestAlreadyFailed when that attempt was released or expired (never charged). Holds past
    their expiry are freed here when they matter: when they hold the tokens this request needs,
    or when this is the retry of an attempt whose worker died.
    """
    amount = _positive_amount(amount)
    ttl = settings.HOLD_TTL_SECONDS if ttl_seconds is None else ttl_seconds
    refusal: LedgerError
    with transaction.atomic(durable=True):
        locked = _lock(account.pk)
        now = timezone.now()
        create = functools.partial(
            _hold_create,
            account=locked,
            request_id=request_id,
            purpose=purpose,
            amount=amount,
            expires_at=now + timedelta(seconds=ttl),
        )
        # The usual case first: tokens enough, and a new request id (a hold inserted in one
        # statement). A request id seen before inserts nothing, and is looked at below. The
        # holds are read after the lock, in statements of their own: a join in the locking
        # query would see the other rows as they were before the wait (PostgreSQL re-reads only
        # the locked row).
        hold = create() if locked.available >= amount else None
        if hold is None:
            existing = Hold.objects.filter(account=locked, request_id=request_id).first()
            if existing is None and _expire_due(locked, now) and locked.available >= amount:
                # No hold of this request id (read under the lock): this one inserts.
                hold = create()
            elif existing is None:
                refusal = InsufficientTokens(needed=amount, available=locked.available)
            elif existing.purpose != purpose:
                refusal = RequestConflict("This request id was already used for another request.")
            elif existing.status == Hold.Status.PENDING and existing.expires_at > now:
                refusal = RequestInProgress("This request is still being processed.")
            elif existing.status == Hold.Status.CAPTURED:
                return Reservation(hold=existing, replay=True)
            else:
                if existing.status == Hold.Status.PENDING:  # its worker died: free it now
                    _expire_due(locked, now)
                refusal = RequestAlreadyFailed("This request failed earlier and was not charged.")
        if hold is not None:
            _append(
                account=locked,
                kind=Kind.HOLD,
                source=source,
                held_delta=amount,
                actor=actor,
                reason="Reserved until delivery.",
                request_id=request_id,
                hold=hold,
            )
            return Reservation(hold=hold, replay=False)
    raise refusal


@overload
def hold_capture[T](
    *,
    hold: Hold,
    reason: str,
    record: Callable[[Hold, LedgerEntry], T],
    actor: User | None = None,
    source: str = Source.WEB,
) -> Capture[T]: ...


@overload
def hold_capture(
    *,
    hold: Hold,
    reason: str,
    record: None = None,
    actor: User | None = None,
    source: str = Source.WEB,
) -> Capture[None]: ...


def hold_capture[T](
    *,
    hold: Hold,
    reason: str,
    record: Callable[[Hold, LedgerEntry], T] | None = None,
    actor: User | None = None,
    source: str = Source.WEB,
) -> Capture[T] | Capture[None]:
    """Phase two: charge the hold and store what was bought, in one transaction.

    `record(hold, debit)` runs inside the transaction (it stores what was bought); if it
    raises, nothing is charged and the hold stays pending for the caller to release.
    A hold past its expiry is expired instead and HoldExpired raised: a late capture is free.
    """
    refusal: LedgerError
    with transaction.atomic(durable=True):
        locked = _lock(hold.account_id)
        now = timezone.now()
        # The usual case in one statement: pending and in time -> captured. Under the account
        # lock no other resolver can move this hold; the condition is the database's guarantee.
        if not _captured(hold=hold, now=now):
            current = Hold.objects.get(pk=hold.pk)
            if current.status != Hold.Status.PENDING:
                refusal = HoldNotPending(f"Hold {hold.pk} is already {current.status}.")
            else:
                _expire_due(locked, now)
                refusal = HoldExpired(
                    f"Hold {hold.pk} expired before capture; nothing was charged."
                )
        else:
            # A copy: if `record` raises, the caller's hold is still the pending one it was.
            current = copy.copy(hold)
            current.status, current.resolved_at = Hold.Status.CAPTURED, now
            entry = _append(
                account=locked,
                kind=Kind.DEBIT,
                source=source,
                balance_delta=-current.amount,
                held_delta=-current.amount,
                actor=actor,
                reason=reason,
                request_id=current.request_id,
                hold=current,
            )
            if record is None:
                hold.status, hold.resolved_at = current.status, current.resolved_at
                return Capture(entry=entry, record=None)
            stored = record(current, entry)
            hold.status, hold.resolved_at = current.status, current.resolved_at
            return Capture(entry=entry, record=stored)
    raise refusal


def hold_release(
    *, hold: Hold, note: str, actor: User | None = None, source: str = Source.WEB
) -> LedgerEntry:
    """On failure: free the reservation, charge nothing. HoldNotPending if already resolved."""
    with transaction.atomic(durable=True):
        locked = _lock(hold.account_id)
        current = Hold.objects.get(pk=hold.pk)
        if _resolve(
            account=locked, hold=current, status=Hold.Status.RELEASED, now=timezone.now(), note=note
        ):
            hold.status = current.status
            return _append(
                account=locked,
                kind=Kind.RELEASE,
                source=source,
                held_delta=-current.amount,
                actor=actor,
                reason="Not charged: " + (note or "it could not be delivered."),
                request_id=current.request_id,
                hold=current,
            )
    raise HoldNotPending(f"Hold {hold.pk} is already {current.status}.")


def hold_expire_due(*, now: datetime | None = None) -> int:
    """The sweeper: expire every pending hold past its expiry. One short transaction per account."""
    now = now or timezone.now()
    account_ids = (
        Hold.objects.filter(status=Hold.Status.PENDING, expires_at__lte=now)
        .values_list("account_id", flat=True)
        .distinct()
    )
    expired = 0
    for account_id in list(account_ids):
        with transaction.atomic(durable=True):
            expired += _expire_due(_lock(account_id), now)
    if expired:
        logger.info("hold_expire_due: expired %d pending hold(s)", expired)
    return expired
