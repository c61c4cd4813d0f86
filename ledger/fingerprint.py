"""The ledger's fingerprint: what a backup must bring back, account by account. Reads only.

Taken when a backup is made (`manage.py ledger_fingerprint`, deploy/backup.sh) and again on the
restored copy (deploy/restore-drill.sh): per account its balance, held tokens and version, how
many entries it has and their last version, and a SHA-256 over every stored column of its entries
in version order. The columns come from the model's concrete fields, so a column a migration adds
is hashed with the rest without touching this module.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from django.db import connection, transaction
from psycopg import sql as psycopg_sql

from ledger.models import LedgerEntry, TokenAccount

FORMAT = 1


@dataclass(frozen=True)
class AccountFingerprint:
    balance: int
    held: int
    version: int
    entries: int
    last_version: int
    sha256: str


@dataclass(frozen=True)
class LedgerFingerprint:
    # The entry columns hashed, in the order they are hashed (a restore run by code that hashes
    # other columns is told so rather than shown a difference in every account).
    columns: tuple[str, ...]
    accounts: dict[int, AccountFingerprint]

    @property
    def entries(self) -> int:
        return sum(account.entries for account in self.accounts.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "columns": list(self.columns),
            "entries": self.entries,
            "accounts": {str(pk): asdict(account) for pk, account in self.accounts.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LedgerFingerprint:
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown fingerprint format {data.get('format')!r}")
        return cls(
            columns=tuple(data["columns"]),
            accounts={
                int(pk): AccountFingerprint(**account) for pk, account in data["accounts"].items()
            },
        )


def _row_bytes(values: tuple[Any, ...]) -> bytes:
    """One entry as canonical bytes: JSON, with dates, UUIDs and decimals as their str()."""
    return json.dumps(values, default=str, separators=(",", ":"), ensure_ascii=False).encode()


def ledger_fingerprint_get(*, snapshot: str | None = None) -> LedgerFingerprint:
    """Fingerprint every account, all in one snapshot of the database.

    `snapshot` (PostgreSQL): the id of a snapshot another session exported with
    pg_export_snapshot(), e.g. the one `pg_dump --snapshot` dumps, so that the fingerprint and
    the dump describe exactly the same state of a ledger that keeps being written.
    """
    fields = LedgerEntry._meta.concrete_fields
    columns = tuple(str(field.column) for field in fields)
    attnames = [field.attname for field in fields]
    outermost = not connection.in_atomic_block
    if snapshot is not None and (connection.vendor != "postgresql" or not outermost):
        raise ValueError("a snapshot can only be imported by a new PostgreSQL transaction")
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                if snapshot is not None:
                    # A utility statement takes no bound parameter (the server binds them): the
                    # id as a literal, quoted by the driver.
                    cursor.execute(
                        psycopg_sql.SQL("SET TRANSACTION SNAPSHOT {}").format(
                            psycopg_sql.Literal(snapshot)
                        )
                    )
                cursor.execute("SET LOCAL statement_timeout = 0")
        hashes: dict[int, Any] = {}
        counts: dict[int, int] = {}
        last: dict[int, int] = {}
        rows = (
            LedgerEntry.objects.order_by("account_id", "version")
            .values_list("account_id", "version", *attnames)
            .iterator(chunk_size=5000)
        )
        for account_id, version, *values in rows:
            digest = hashes.get(account_id)
            if digest is None:
                digest = hashes[account_id] = hashlib.sha256()
            digest.update(_row_bytes(tuple(values)) + b"\n")
            counts[account_id] = counts.get(account_id, 0) + 1
            last[account_id] = version
        empty = hashlib.sha256().hexdigest()
        accounts = {
            pk: AccountFingerprint(
                balance=balance,
                held=held,
                version=version,
                entries=counts.get(pk, 0),
                last_version=last.get(pk, 0),
                sha256=hashes[pk].hexdigest() if pk in hashes else empty,
            )
            for pk, balance, held, version in TokenAccount.objects.order_by("pk")
            .values_list("pk", "balance", "held", "version")
            .iterator(chunk_size=5000)
        }
    # Entries of an account that is not there (a dump that lost an account row) still count.
    for pk in hashes.keys() - accounts.keys():
        accounts[pk] = AccountFingerprint(
            balance=0,
            held=0,
            version=0,
            entries=counts[pk],
            last_version=last[pk],
            sha256=hashes[pk].hexdigest(),
        )
    return LedgerFingerprint(columns=columns, accounts=accounts)


def fingerprint_differences(*, expected: LedgerFingerprint, found: LedgerFingerprint) -> list[str]:
    """What differs between two fingerprints, one line per account (empty: they match)."""
    if expected.columns != found.columns:
        return [
            f"the entries' columns differ: the fingerprint hashed {', '.join(expected.columns)}; "
            f"this code hashes {', '.join(found.columns)} (run the drill with the code that "
            "made the backup)"
        ]
    lines = []
    for pk in sorted(expected.accounts.keys() | found.accounts.keys()):
        before, after = expected.accounts.get(pk), found.accounts.get(pk)
        if before is None:
            lines.append(f"account {pk}: not in the fingerprint")
        elif after is None:
            lines.append(f"account {pk}: missing ({before.entries} entries in the fingerprint)")
        elif before != after:
            wanted, got = asdict(before), asdict(after)
            changes = [
                f"{name} {wanted[name]} expected, {got[name]} found"
                for name in wanted
                if name != "sha256" and wanted[name] != got[name]
            ]
            if before.sha256 != after.sha256:
                changes.append("the entries' hash differs")
            lines.append(f"account {pk}: " + "; ".join(changes))
    return lines
