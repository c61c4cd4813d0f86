"""Staff's view of purchases and the provider's events: read-only; refunds, re-checks and
reprocessing go through payments.services."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from ledger.admin import ReadOnlyAdmin, _staff
from ledger.models import LedgerEntry
from payments import services
from payments.models import PaymentEvent, Purchase
from payments.providers import ProviderError


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyAdmin[Purchase]):
    list_display = (
        "created_at",
        "user",
        "pack_name",
        "tokens",
        "price",
        "status",
        "amount_refunded",
        "shortfall",
        "dispute_status",
    )
    list_filter = ("status", "dispute_status", "provider")
    search_fields = ("id", "user__email", "checkout_session_id", "payment_intent_id", "charge_id")
    list_select_related = ("user",)
    readonly_fields = [field.name for field in Purchase._meta.fields] + ["ledger_entries"]
    actions = ("refund_unspent", "recheck", "grant_reviewed")
    date_hierarchy = "created_at"

    @admin.display(description="Ledger entries")
    def ledger_entries(self, purchase: Purchase) -> str:
        entries = LedgerEntry.objects.filter(purchase=purchase.pk).order_by("version")
        # The signed delta is formatted here: format_html escapes its arguments into text first,
        # and "{:+d}" of a text raises ValueError (which the admin shows as "-").
        return (
            format_html_join(
                mark_safe("<br>"),
                "{} {} token(s), balance after {}: {}",
                (
                    (
                        entry.get_kind_display(),
                        f"{entry.balance_delta:+d}",
                        entry.balance_after,
                        entry.reason,
                    )
                    for entry in entries
                ),
            )
            or "None"
        )

    @admin.action(description="Refund unspent tokens (money back, tokens taken back)")
    def refund_unspent(self, request: HttpRequest, queryset: QuerySet[Purchase]) -> None:
        if not request.user.has_perm("ledger.grant_tokens"):
            self.message_user(request, "You may not refund.", messages.ERROR)
            return
        for purchase in queryset:
            try:
                done = services.purchase_refund_unspent(purchase=purchase, actor=_staff(request))
            except (services.PurchaseRefused, ProviderError) as exc:
                self.message_user(request, f"{purchase.pk}: {exc}", messages.ERROR)
                continue
            self.message_user(
                request,
                f"{purchase.pk}: {done.refunded} refunded in all, "
                f"{done.refund_tokens_taken} token(s) taken back"
                + (f", {done.shortfall} short (spent)" if done.shortfall else ""),
                messages.SUCCESS,
            )

    @admin.action(description="Grant the pack after a review (paid, held for review)")
    def grant_reviewed(self, request: HttpRequest, queryset: QuerySet[Purchase]) -> None:
        if not request.user.has_perm("ledger.grant_tokens"):
            self.message_user(request, "You may not grant tokens.", messages.ERROR)
            return
        for purchase in queryset:
            try:
                done = services.purchase_grant_reviewed(purchase=purchase, actor=_staff(request))
            except services.PurchaseRefused as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self.message_user(
                request, f"{done.pk}: {done.tokens} token(s) granted", messages.SUCCESS
            )

    @admin.action(description="Re-check with the payment provider")
    def recheck(self, request: HttpRequest, queryset: QuerySet[Purchase]) -> None:
        for purchase in queryset:
            try:
                done = services.purchase_recheck(purchase=purchase)
            except ProviderError as exc:
                self.message_user(request, f"{purchase.pk}: {exc}", messages.ERROR)
                continue
            self.message_user(request, f"{purchase.pk}: {done.get_status_display()}")


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdmin[PaymentEvent]):
    list_display = ("received_at", "id", "type", "processed_at", "attempts", "outcome", "purchase")
    list_filter = ("type", ("processed_at", admin.EmptyFieldListFilter))
    search_fields = ("id", "type", "purchase__id")
    readonly_fields = [field.name for field in PaymentEvent._meta.fields]
    actions = ("reprocess",)

    @admin.action(description="Reprocess (events not processed yet)")
    def reprocess(self, request: HttpRequest, queryset: QuerySet[PaymentEvent]) -> None:
        for event in queryset:
            try:
                receipt = services.event_process(event_id=event.pk)
            except services.EventFailed as exc:
                self.message_user(request, f"{event.pk}: failed again: {exc}", messages.ERROR)
                continue
            already = " (already processed)" if receipt.replay else ""
            self.message_user(request, f"{event.pk}: {receipt.outcome}{already}")
