from collections.abc import Awaitable, Callable
from typing import cast

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils.decorators import sync_and_async_middleware

# Set on a request whose response must carry the balance badge again.
CHANGED_ATTR = "_ledger_balance_changed"
# Set once the badge is in the response (a view that renders in a thread adds it there).
ADDED_ATTR = "_ledger_badge_added"

SyncGetResponse = Callable[[HttpRequest], HttpResponse]
AsyncGetResponse = Callable[[HttpRequest], Awaitable[HttpResponse]]


def mark_balance_changed(request: HttpRequest) -> None:
    """Ask for the balance badge to be sent again with this (htmx) response."""
    setattr(request, CHANGED_ATTR, True)


def _wants_badge(request: HttpRequest, response: HttpResponse) -> bool:
    return bool(
        getattr(request, "htmx", False)
        and getattr(request, CHANGED_ATTR, False)
        and not getattr(request, ADDED_ATTR, False)
        and request.user.is_authenticated
        and not response.streaming
        and response.get("Content-Type", "").startswith("text/html")
        and not (300 <= response.status_code < 400)
    )


def _append_badge(request: HttpRequest, response: HttpResponse) -> None:
    badge = render_to_string("base.html#balance-badge", {"oob": True}, request=request)
    response.content += badge.encode(response.charset)
    if response.has_header("Content-Length"):
        response["Content-Length"] = str(len(response.content))
    setattr(request, ADDED_ATTR, True)


def balance_badge_add(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Add the badge now, if this response needs it: for a coroutine view that renders its
    response in a thread (sync_to_async), so the badge's balance is read in that same hop
    instead of another one in the middleware."""
    if _wants_badge(request, response):
        _append_badge(request, response)
    return response


@sync_and_async_middleware
def balance_badge_middleware(
    get_response: SyncGetResponse | AsyncGetResponse,
) -> SyncGetResponse | AsyncGetResponse:
    """Appends the balance badge, out of band, to any htmx response that changed the balance.

    The badge is defined once, in base.html; this renders the same partial with
    hx-swap-oob so the page's badge shows the stored balance without a reload. It runs in
    either mode, so an async view's response never goes through a thread just to pass here.
    """
    if iscoroutinefunction(get_response):
        aget_response = cast(AsyncGetResponse, get_response)

        async def amiddleware(request: HttpRequest) -> HttpResponse:
            response = await aget_response(request)
            if _wants_badge(request, response):
                await sync_to_async(_append_badge)(request, response)  # reads the balance
            return response

        return amiddleware

    sget_response = cast(SyncGetResponse, get_response)

    def middleware(request: HttpRequest) -> HttpResponse:
        response = sget_response(request)
        if _wants_badge(request, response):
            _append_badge(request, response)
        return response

    return middleware
