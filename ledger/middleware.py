from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string


def mark_balance_changed(request: HttpRequest) -> None:
    """Ask for the balance badge to be sent again with this (htmx) response."""
    request.balance_changed = True


class BalanceBadgeMiddleware:
    """Appends the balance badge, out of band, to any htmx response that changed the balance.

    The badge is defined once, in base.html; this renders the same partial with
    hx-swap-oob so the page's badge shows the stored balance without a reload.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            getattr(request, "htmx", False)
            and getattr(request, "balance_changed", False)
            and request.user.is_authenticated
            and not response.streaming
            and response.get("Content-Type", "").startswith("text/html")
            and not (300 <= response.status_code < 400)
        ):
            badge = render_to_string("base.html#balance-badge", {"oob": True}, request=request)
            response.content += badge.encode(response.charset)
            if response.has_header("Content-Length"):
                response["Content-Length"] = str(len(response.content))
        return response
