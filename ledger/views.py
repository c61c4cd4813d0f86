import math

from django.conf import settings
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from ledger.selectors import entries_for


@require_GET
def entries(request: HttpRequest) -> HttpResponse:
    """The candidate's own ledger: grants, receipts, refunds and pool resets, newest first."""
    page = Paginator(entries_for(request.user).select_related("hold__served_question"), 25)
    page_obj = page.get_page(request.GET.get("page"))
    return render(request, "ledger/entries.html", {"page_obj": page_obj})


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
