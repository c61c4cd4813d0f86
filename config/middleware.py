"""Project-wide response policies, written to run in either mode (no thread hop under ASGI)."""

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.cache import has_vary_header, patch_cache_control
from django.utils.decorators import sync_and_async_middleware


@sync_and_async_middleware
def private_pages_middleware(get_response: Callable) -> Callable:
    """A page that depends on the visitor's session (every logged-in page: the session adds
    `Vary: Cookie`) may be kept by the browser but never by a shared cache: `Cache-Control:
    private`, unless the view said otherwise. Listed before SessionMiddleware, so it sees the
    Vary header that middleware adds."""

    def private(response: HttpResponse) -> HttpResponse:
        if has_vary_header(response, "Cookie") and not response.has_header("Cache-Control"):
            patch_cache_control(response, private=True)
        return response

    if iscoroutinefunction(get_response):

        async def amiddleware(request: HttpRequest) -> HttpResponse:
            return private(await get_response(request))

        return amiddleware

    def middleware(request: HttpRequest) -> HttpResponse:
        return private(get_response(request))

    return middleware
