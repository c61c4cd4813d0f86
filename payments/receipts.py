"""What the receipts page says of a purchase's ledger entries (see ledger.receipts)."""

from collections.abc import Mapping, Sequence

from django.urls import reverse

from ledger.models import LedgerEntry
from ledger.receipts import ReceiptDetail, describer_register
from payments.models import Purchase


@describer_register
def purchase_receipts(entries: Sequence[LedgerEntry]) -> Mapping[int, ReceiptDetail]:
    ids = {entry.purchase for entry in entries if entry.purchase is not None}
    if not ids:
        return {}
    purchases = {p.pk: p for p in Purchase.objects.filter(pk__in=ids)}
    details = {}
    for entry in entries:
        purchase = purchases.get(entry.purchase) if entry.purchase else None
        if purchase is None:
            continue
        details[entry.pk] = ReceiptDetail(
            url=purchase.receipt_url or reverse("payments:buy"),
            link_text="Payment receipt" if purchase.receipt_url else "Your purchases",
            note=f"{purchase.pack_name}: {purchase.tokens} tokens for {purchase.price}",
        )
    return details
