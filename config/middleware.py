"""Project-wide response policies, written to run in either mode (no thread hop under ASGI)."""

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.cache import has_vary_header, patch_cache_control


class PrivatePagesMiddleware:
    """A page that depends on the visitor's session (every logged-in page: the session adds
    `Vary: Cookie`) may be kept by the browser but never by a shared cache: `Cache-Control:
    private`, unless the view said otherwise. Listed before SessionMiddleware, so it sees the
    Vary header that middleware adds."""

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
        return self._private(self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        return self._private(await self.get_response(request))

    @staticmethod
    def _private(response: HttpResponse) -> HttpResponse:
        if has_vary_header(response, "Cookie") and not response.has_header("Cache-Control"):
            patch_cache_control(response, private=True)
        return response
