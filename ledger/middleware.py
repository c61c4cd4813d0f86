from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string


def mark_balance_changed(request: HttpRequest) -> None:
    """Ask for the balance badge to be sent again with this (htmx) response."""
    request.balance_changed = True


class BalanceBadgeMiddleware:
    """Appends the balance badge, out of band, to any htmx response that changed the balance.

    The badge is defined once, in base.html; this renders the same partial with
    hx-swap-oob so the page's badge shows the stored balance without a reload. It runs in
    either mode, so an async view's response never goes through a thread just to pass here.
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponse]
        | Callable[[HttpRequest], Awaitable[HttpResponse]],
    ) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.async_mode:
            return self.__acall__(request)
        response = self.get_response(request)
        if self._wants_badge(request, response):
            self._append_badge(request, response)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        response = await self.get_response(request)
        if self._wants_badge(request, response):
            await sync_to_async(self._append_badge)(request, response)  # reads the balance
        return response

    @staticmethod
    def _wants_badge(request: HttpRequest, response: HttpResponse) -> bool:
        return bool(
            getattr(request, "htmx", False)
            and getattr(request, "balance_changed", False)
            and request.user.is_authenticated
            and not response.streaming
            and response.get("Content-Type", "").startswith("text/html")
            and not (300 <= response.status_code < 400)
        )

    @staticmethod
    def _append_badge(request: HttpRequest, response: HttpResponse) -> None:
        badge = render_to_string("base.html#balance-badge", {"oob": True}, request=request)
        response.content += badge.encode(response.charset)
        if response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))
