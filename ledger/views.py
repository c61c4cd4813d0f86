import math

from django.conf import settings
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from config.types import AuthenticatedHttpRequest
from ledger.receipts import receipt_detail_list
from ledger.selectors import entry_list


@require_GET
def entries(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The candidate's own ledger: grants, receipts, refunds and adjustments, newest first, each
    receipt with what the product that sold it says of it (ledger.receipts)."""
    page_obj = Paginator(entry_list(user=request.user), 25).get_page(request.GET.get("page"))
    details = receipt_detail_list(entries=list(page_obj))
    rows = [(entry, details.get(entry.pk)) for entry in page_obj.object_list]
    return render(request, "ledger/entries.html", {"page_obj": page_obj, "rows": rows})


@require_GET
def costs(request: HttpRequest) -> HttpResponse:
    """'What costs a token': the token promise in plain words."""
    return render(
        request,
        "ledger/costs.html",
        {
            "welcome_tokens": settings.WELCOME_TOKENS,
            "hold_minutes": math.ceil(settings.HOLD_TTL_SECONDS / 60),
        },
    )
