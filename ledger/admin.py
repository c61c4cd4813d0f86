"""Staff's view of the ledger: read-only, with grants and refunds going through the services."""

import csv
from collections.abc import Iterator
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.functional import cached_property

from accounts.models import User
from config.db import connection_hand_back
from ledger import services
from ledger.exceptions import LedgerError
from ledger.models import Hold, LedgerEntry, TokenAccount

# Counting beyond this many rows is not worth a scan: the page shows "10000+"-style paging.
COUNT_CAP = 10_000


class CappedCountPaginator(Paginator[Any]):
    """Counts at most COUNT_CAP + 1 rows, and uses the planner's estimate above that.

    A table of millions of entries must not be scanned by COUNT(*) to draw one page.
    """

    @cached_property
    def count(self) -> int:
        queryset = cast("QuerySet[Any]", self.object_list)
        capped = queryset[: COUNT_CAP + 1].count()
        if capped <= COUNT_CAP:
            return capped
        if not queryset.query.where and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [queryset.model._meta.db_table],
                )
                row = cursor.fetchone()
            if row and row[0] > capped:
                return int(row[0])
        return capped


def _staff(request: HttpRequest) -> User:
    """The staff member behind an admin request (the admin only serves logged-in staff)."""
    if not isinstance(request.user, User):
        raise TypeError("an admin request without a logged-in user")
    return request.user


class ReadOnlyAdmin[M: Model](admin.ModelAdmin[M]):
    """Staff may look, never edit: every change goes through ledger.services."""

    show_facets = admin.ShowFacets.NEVER

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: M | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: M | None = None) -> bool:
        return False

    def has_grant_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ledger.grant_tokens")


class GrantForm(forms.Form):
    amount = forms.IntegerField(min_value=1, max_value=1_000_000, label="Tokens to grant")
    reason = forms.CharField(max_length=500, strip=True, widget=forms.TextInput(attrs={"size": 60}))


class RefundForm(forms.Form):
    reason = forms.CharField(max_length=500, strip=True, widget=forms.TextInput(attrs={"size": 60}))


def _action_input(
    request: HttpRequest,
    *,
    admin_site: admin.AdminSite,
    queryset: QuerySet[Any],
    form_class: type[forms.Form],
    action: str,
    title: str,
) -> forms.Form | TemplateResponse:
    """An action that needs input (an amount, a reason) asks for it on a page of its own:
    returns the valid form once submitted, else that page."""
    form = form_class(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        return form
    page = TemplateResponse(
        request,
        "admin/ledger/action_form.html",
        {
            **admin_site.each_context(request),
            "title": title,
            "form": form,
            "queryset": queryset,
            "action": action,
            "opts": queryset.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        },
    )
    return page


class EmailOrRequestIdSearchAdmin[M: Model](ReadOnlyAdmin[M]):
    """Search a big table by exact request id, or by email through the small accounts table,
    so that PostgreSQL uses indexes instead of scanning every row for UPPER(...) matches."""

    search_fields = ["=account__email", "=request_id"]  # shows the box; the lookup is below
    search_help_text = "Exact email address or request id."

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[M], search_term: str
    ) -> tuple[QuerySet[M], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        accounts = TokenAccount.objects.filter(email__iexact=term).values("pk")
        return queryset.filter(Q(account_id__in=accounts) | Q(request_id=term)), False


@admin.register(TokenAccount)
class TokenAccountAdmin(ReadOnlyAdmin[TokenAccount]):
    list_display = ["email", "balance", "held", "version", "updated_at"]
    search_fields = ["=email", "^email"]
    readonly_fields = ["user", "email", "balance", "held", "version", "created_at", "updated_at"]
    actions = ["grant_tokens"]
    show_full_result_count = False
    paginator = CappedCountPaginator

    @admin.action(description="Grant tokens to the selected accounts", permissions=["grant"])
    def grant_tokens(
        self, request: HttpRequest, queryset: QuerySet[TokenAccount]
    ) -> TemplateResponse | None:
        form = _action_input(
            request,
            admin_site=self.admin_site,
            queryset=queryset,
            form_class=GrantForm,
            action="grant_tokens",
            title="Grant tokens",
        )
        if isinstance(form, TemplateResponse):
            return form
        for account in queryset:
            entry = services.account_grant(
                account=account,
                amount=form.cleaned_data["amount"],
                actor=_staff(request),
                source=LedgerEntry.Source.ADMIN,
                reason=form.cleaned_data["reason"],
            )
            self.message_user(
                request,
                f"Granted {entry.balance_delta} to {account.email}: balance {entry.balance_after}.",
                messages.SUCCESS,
            )
        return None


@admin.register(Hold)
class HoldAdmin(EmailOrRequestIdSearchAdmin[Hold]):
    list_display = ["id", "account", "status", "amount", "request_id", "created_at", "expires_at"]
    list_filter = ["status"]
    list_select_related = ["account"]
    show_full_result_count = False
    paginator = CappedCountPaginator


@admin.register(LedgerEntry)
class LedgerEntryAdmin(EmailOrRequestIdSearchAdmin[LedgerEntry]):
    list_display = [
        "created_at",
        "account_email",
        "kind",
        "balance_delta",
        "held_delta",
        "balance_after",
        "held_after",
        "actor_label",
        "source",
        "reason",
        "request_id",
    ]
    list_filter = ["kind", "source", ("created_at", admin.DateFieldListFilter)]
    list_select_related = ["account"]
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 100
    actions = ["refund_debits"]
    change_list_template = "admin/ledger/ledgerentry/change_list.html"
    readonly_fields = [f.name for f in LedgerEntry._meta.fields]

    @admin.display(description="account", ordering="account__email")
    def account_email(self, entry: LedgerEntry) -> str:
        return entry.account.email

    def get_urls(self) -> list[URLPattern]:
        export = path(
            "export.csv",
            self.admin_site.admin_view(self.export_csv),
            name="ledger_ledgerentry_export",
        )
        return [export, *super().get_urls()]

    def export_csv(self, request: HttpRequest) -> HttpResponseBase:
        """The entries the changelist shows with the same filters, all of them, streamed."""
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        queryset = self.get_changelist_instance(request).get_queryset(request)
        response = StreamingHttpResponse(_csv_rows(queryset), content_type="text/csv")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="ledger-{stamp}.csv"'
        return response

    @admin.action(description="Refund the selected debits", permissions=["grant"])
    def refund_debits(
        self, request: HttpRequest, queryset: QuerySet[LedgerEntry]
    ) -> TemplateResponse | None:
        form = _action_input(
            request,
            admin_site=self.admin_site,
            queryset=queryset,
            form_class=RefundForm,
            action="refund_debits",
            title="Refund debits",
        )
        if isinstance(form, TemplateResponse):
            return form
        for entry in queryset:
            try:
                refund = services.account_refund(
                    entry=entry,
                    actor=_staff(request),
                    source=LedgerEntry.Source.ADMIN,
                    reason=form.cleaned_data["reason"],
                )
            except LedgerError as exc:
                self.message_user(request, f"Entry {entry.pk}: {exc}", messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"Refunded entry {entry.pk} to {entry.account.email}: "
                    f"balance {refund.balance_after}.",
                    messages.SUCCESS,
                )
        return None


CSV_COLUMNS = [
    "id",
    "created_at",
    "account_id",
    "account__email",
    "kind",
    "balance_delta",
    "held_delta",
    "balance_after",
    "held_after",
    "version",
    "actor_label",
    "source",
    "reason",
    "request_id",
    "hold_id",
    "corrects_id",
]


class _Echo:
    def write(self, value: str) -> str:
        return value


def _cell(value: object) -> object:
    # A spreadsheet would run a cell starting with these as a formula.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


CSV_BATCH = 2000


def _csv_rows(queryset: QuerySet[LedgerEntry]) -> Iterator[str]:
    """Newest first, in keyset batches: each batch is one short query, and the connection goes
    back to the pool between batches, so a long download holds no connection, no transaction
    and no server-side cursor (it works behind PgBouncer in transaction mode), in bounded
    memory."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    rows = queryset.order_by("-pk").values_list(*CSV_COLUMNS)
    batch = list(rows[:CSV_BATCH])
    while batch:
        connection_hand_back()  # between batches
        for row in batch:
            yield writer.writerow([_cell(value) for value in row])
        batch = (
            list(rows.filter(pk__lt=batch[-1][0])[:CSV_BATCH]) if len(batch) == CSV_BATCH else []
        )
