"""Reads of the ledger. Nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import connection, transaction
from django.db.models import (
    Count,
    F,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce

from ledger.models import Hold, LedgerEntry, TokenAccount

if TYPE_CHECKING:
    from accounts.models import User

# What a candidate sees in their own ledger: every change of the balance (and the older notes).
# Holds, releases and expiries move only `held` and would be noise in a receipt list.
CANDIDATE_VISIBLE_KINDS = (
    LedgerEntry.Kind.GRANT,
    LedgerEntry.Kind.DEBIT,
    LedgerEntry.Kind.REFUND,
    LedgerEntry.Kind.ADJUSTMENT,
    LedgerEntry.Kind.NOTE,
    *LedgerEntry.PURCHASE_KINDS,
)


def account_balance_get(*, user: User) -> int:
    """The stored balance: what the badge shows."""
    balance = TokenAccount.objects.filter(user=user).values_list("balance", flat=True).first()
    return balance or 0


def entry_list(*, user: User) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(
        account__user=user, kind__in=CANDIDATE_VISIBLE_KINDS
    ).order_by("-version")


@dataclass(frozen=True)
class AccountProblem:
    account_id: int
    email: str
    problems: tuple[str, ...]

    def __str__(self) -> str:
        return f"account {self.account_id} <{self.email}>: " + "; ".join(self.problems)


def account_problem_list(*, account_ids: list[int] | None = None) -> list[AccountProblem]:
    """Reconcile every account against its entries and holds. Empty list: the ledger is sound.

    For each account: balance == sum of balance deltas, held == sum of held deltas == amount of
    pending holds, versions 1..N without a gap, and the last entry's balance/held after match;
    and for each purchase it was paid for, one grant, and what is left of it (granted - taken
    back + given back) between 0 and the grant.
    """
    zero = Value(0, output_field=IntegerField())
    accounts = TokenAccount.objects.annotate(
        entry_balance=Coalesce(Sum("entries__balance_delta"), zero),
        entry_held=Coalesce(Sum("entries__held_delta"), zero),
        entry_count=Count("entries"),
        min_version=Min("entries__version"),
        max_version=Max("entries__version"),
    ).order_by("pk")
    holds = Hold.objects.filter(status=Hold.Status.PENDING)
    entries = LedgerEntry.objects.all()
    if account_ids is not None:
        accounts = accounts.filter(pk__in=account_ids)
        holds = holds.filter(account_id__in=account_ids)
        entries = entries.filter(account_id__in=account_ids)
    pending = dict(
        holds.values("account_id").annotate(total=Sum("amount")).values_list("account_id", "total")
    )
    account_version = TokenAccount.objects.filter(pk=OuterRef("account_id")).values("version")
    last_after = {
        account_id: (balance_after, held_after)
        for account_id, balance_after, held_after in entries.filter(
            version=Subquery(account_version[:1])
        ).values_list("account_id", "balance_after", "held_after")
    }
    purchases = _purchase_problems(entries)
    found = []
    for account in accounts.iterator(chunk_size=2000):
        problems = []
        if account.balance != account.entry_balance:
            problems.append(
                f"balance {account.balance} != sum of balance deltas {account.entry_balance}"
            )
        open_holds = pending.get(account.pk, 0)
        if not account.held == account.entry_held == open_holds:
            problems.append(
                f"held {account.held}, sum of held deltas {account.entry_held}, "
                f"open holds {open_holds} differ"
            )
        if account.entry_count and (
            account.min_version != 1 or account.max_version != account.entry_count
        ):
            problems.append(
                f"versions not gapless: {account.entry_count} entries numbered "
                f"{account.min_version}..{account.max_version}"
            )
        if account.version != account.entry_count:
            problems.append(f"account version {account.version} != {account.entry_count} entries")
        after = last_after.get(account.pk)
        if after is not None and after != (account.balance, account.held):
            problems.append(
                f"last entry says balance {after[0]}, held {after[1]}; "
                f"account says {account.balance}, {account.held}"
            )
        problems.extend(purchases.get(account.pk, ()))
        if problems:
            found.append(AccountProblem(account.pk, account.email, tuple(problems)))
    return found


def _purchase_problems(entries: QuerySet[LedgerEntry]) -> dict[int, list[str]]:
    """Per account, what is wrong with its purchases: per purchase, one grant, and granted -
    taken back + given back between 0 and the grant."""
    kind = LedgerEntry.Kind
    rows = (
        entries.filter(purchase__isnull=False)
        .values("account_id", "purchase")
        .annotate(
            grants=Count("id", filter=Q(kind=kind.PURCHASE)),
            granted=Sum("balance_delta", filter=Q(kind=kind.PURCHASE), default=0),
            net=Sum("balance_delta"),
        )
        .exclude(grants=1, net__gte=0, net__lte=F("granted"))
    )
    problems: dict[int, list[str]] = {}
    for row in rows:
        problems.setdefault(row["account_id"], []).append(
            f"purchase {row['purchase']}: {row['grants']} grant(s) of {row['granted']} token(s), "
            f"{row['net']} left after what was taken back and given back (must be 0 to the grant)"
        )
    return problems


@dataclass(frozen=True)
class LedgerReport:
    checked: int
    problems: list[AccountProblem]


def ledger_report_get() -> LedgerReport:
    """account_problem_list() for every account, and how many accounts were checked.

    One snapshot for all the queries: a purchase made meanwhile must not look like a mismatch
    between an account and its holds. (Inside an outer transaction, such as a test's, it reads
    what that transaction sees.)
    """
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                # The app's statement timeout (DB_STATEMENT_TIMEOUT_MS) guards requests; a check
                # of the whole ledger may rightly take longer, so it lifts it for itself.
                cursor.execute("SET LOCAL statement_timeout = 0")
        return LedgerReport(checked=TokenAccount.objects.count(), problems=account_problem_list())
