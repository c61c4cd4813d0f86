"""What a receipt says beyond the ledger's own columns, told by the product that sold it.

The ledger knows accounts, holds and entries, never what was bought: a product registers a
describer (in its AppConfig.ready) that, given a page of entries, says for some of them where
the purchase can be seen and anything worth noting about it. The receipts page asks every
describer once per page, so a describer makes one query for the whole page, not one per entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ledger.models import LedgerEntry


@dataclass(frozen=True)
class ReceiptDetail:
    url: str = ""  # where the purchase can be seen
    link_text: str = ""
    note: str = ""  # e.g. something the purchase changed besides the balance


Describer = Callable[[Sequence[LedgerEntry]], Mapping[int, ReceiptDetail]]

_describers: list[Describer] = []


def describer_register(describer: Describer) -> Describer:
    """Register a describer (usable as a decorator); registering one twice keeps one."""
    if describer not in _describers:
        _describers.append(describer)
    return describer


def receipt_detail_list(*, entries: Sequence[LedgerEntry]) -> dict[int, ReceiptDetail]:
    """{entry id: detail} for the entries some describer knows about."""
    details: dict[int, ReceiptDetail] = {}
    for describer in _describers:
        details.update(describer(entries))
    return details
