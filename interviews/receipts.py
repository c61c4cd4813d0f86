"""What a candidate's receipt says about a question bought (ledger.receipts): where to see the
question, and whether it started a new pass through the topic's pool."""

from collections.abc import Mapping, Sequence

from interviews.models import ServedQuestion
from ledger.models import LedgerEntry
from ledger.receipts import ReceiptDetail, describer_register


@describer_register
def served_question_details(entries: Sequence[LedgerEntry]) -> Mapping[int, ReceiptDetail]:
    debit_ids = [e.pk for e in entries if e.kind == LedgerEntry.Kind.DEBIT]
    if not debit_ids:
        return {}
    served = ServedQuestion.objects.filter(debit_id__in=debit_ids).select_related("topic")
    return {
        sq.debit_id: ReceiptDetail(
            url=sq.get_absolute_url(), link_text="see the question", note=sq.pool_reset_note
        )
        for sq in served
    }
