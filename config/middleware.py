"""Project-wide middleware, each written to run in either mode: no thread hop under ASGI where
nothing blocks.

Django's own middleware are built on MiddlewareMixin, which under ASGI runs every hook through
a thread (sync_to_async), whatever the hook does. The synchronous pages do not pay for it (they
run the whole chain in one hop: config.asgi); the coroutine views would, a dozen hops a request.
`in_event_loop` adapts such a middleware, unchanged, to call its hooks in the event loop: only
for middleware whose hooks do no I/O (headers, cookies, lazy objects, URL resolving). The two
that can do I/O say when: the session is saved in one hop when it must be, and the login check
loads the session and the user in one hop. A test drives the coroutine views with Django's
async-safety check on (it raises if anything here touches the database from the loop).
"""

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware import clickjacking, common, csp, csrf, security
from django.utils.cache import has_vary_header, patch_cache_control
from django.utils.decorators import sync_and_async_middleware
from django.utils.deprecation import MiddlewareMixin


def in_event_loop[M: MiddlewareMixin](middleware: type[M]) -> type[M]:
    """`middleware` (a MiddlewareMixin), its hooks called directly in async mode instead of
    through a thread each. Only for hooks that do no I/O. Sync mode is Django's, unchanged."""

    class InEventLoop(middleware):  # type: ignore[valid-type,misc]
        def __init__(self, get_response: Callable[..., Any]) -> None:
            super().__init__(get_response)
            view_hook = getattr(self, "process_view", None)
            if self.async_mode and view_hook is not None and not iscoroutinefunction(view_hook):

                async def process_view(*args: Any) -> HttpResponseBase | None:
                    return view_hook(*args)

                self.process_view = process_view

        async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
            response = None
            if hasattr(self, "process_request"):
                response = self.process_request(request)
            response = response or await self.get_response(request)
            if hasattr(self, "process_response"):
                response = await self.aprocess_response(request, response)
            return response

        async def aprocess_response(
            self, request: HttpRequest, response: HttpResponseBase
        ) -> HttpResponseBase:
            return self.process_response(request, response)

    InEventLoop.__name__ = InEventLoop.__qualname__ = middleware.__name__
    InEventLoop.__doc__ = f"{middleware.__module__}.{middleware.__name__}, in the event loop."
    return InEventLoop


# Headers, redirects and cookies: no I/O in any hook.
SecurityMiddleware = in_event_loop(security.SecurityMiddleware)
CommonMiddleware = in_event_loop(common.CommonMiddleware)
AuthenticationMiddleware = in_event_loop(auth.AuthenticationMiddleware)  # lazy: loads nothing
MessageMiddleware = in_event_loop(messages.MessageMiddleware)  # cookie storage first
XFrameOptionsMiddleware = in_event_loop(clickjacking.XFrameOptionsMiddleware)
ContentSecurityPolicyMiddleware = in_event_loop(csp.ContentSecurityPolicyMiddleware)


class _CsrfRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CsrfViewMiddleware(in_event_loop(csrf.CsrfViewMiddleware)):  # type: ignore[misc]
    """Django's, its checks in the event loop: the CSRF secret is a cookie (CSRF_USE_SESSIONS is
    off: a system check says so) and the form body is already in memory under ASGI. A refusal
    is not I/O-free: the failure page (403_csrf.html) is rendered with the context processors,
    which load the session, the user and the balance, so in async mode it is rendered in one
    thread hop (in the loop it raised SynchronousOnlyOperation: a 500 instead of the 403)."""

    def __init__(self, get_response: Callable[..., Any]) -> None:
        super().__init__(get_response)
        if self.async_mode:
            check: Callable[..., Awaitable[HttpResponseBase | None]] = self.process_view  # type: ignore[has-type]
            reject = super()._reject

            async def process_view(request: HttpRequest, *args: Any) -> HttpResponseBase | None:
                try:
                    return await check(request, *args)
                except _CsrfRefused as refused:
                    return await sync_to_async(reject)(request, refused.reason)

            self.process_view = process_view  # type: ignore[method-assign,assignment]

    def _reject(self, request: HttpRequest, reason: str) -> HttpResponseBase:
        if self.async_mode:
            raise _CsrfRefused(reason)  # rendered by process_view, in a thread
        return super()._reject(request, reason)


class SessionMiddleware(in_event_loop(sessions.SessionMiddleware)):  # type: ignore[misc]
    """The session store is made lazily (no I/O); the response saves it, in one hop, only
    when Django's middleware would write it."""

    async def aprocess_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        session = getattr(request, "session", None)
        writes = session is not None and (
            (session.modified or settings.SESSION_SAVE_EVERY_REQUEST) and not session.is_empty()
        )
        if writes:
            return await sync_to_async(self.process_response)(request, response)
        return self.process_response(request, response)


# A coroutine view may name what it reads first (`@preloads(load)`, `load(request,
# **view_kwargs)`: the candidate's own session, say): the login check reads it in its own thread
# hop, with the session and the user, and keeps it on the request for the view
# (`preloaded(request)`), which then starts without a hop of its own. Whatever `load` raises
# (Http404) is raised as the view would have raised it.
PRELOAD_ATTR = "preload"
PRELOADED_ATTR = "_preloaded"


def preloads[V: Callable[..., Any]](load: Callable[..., Any]) -> Callable[[V], V]:
    """Mark a coroutine view: the login check reads `load(request, **view_kwargs)` for it."""

    def mark(view: V) -> V:
        setattr(view, PRELOAD_ATTR, load)
        return view

    return mark


def preloaded(request: HttpRequest) -> Any:
    """What the login check read for this request's view (`preloads`), or None (a server whose
    login check runs in its synchronous form, which reads nothing for the view)."""
    return getattr(request, PRELOADED_ATTR, None)


def _is_authenticated(request: HttpRequest, view_func: Any, view_kwargs: dict[str, Any]) -> bool:
    # Loads the session and the user, kept on the request; then what the view reads first.
    if not request.user.is_authenticated:
        return False
    load = getattr(view_func, PRELOAD_ATTR, None)
    if load is not None:
        setattr(request, PRELOADED_ATTR, load(request, **view_kwargs))
    return True


class LoginRequiredMiddleware(auth.LoginRequiredMiddleware):
    """Django's, with the check in one hop in async mode: the session and the user are loaded
    together and kept on the request, so the view reads request.user with no more I/O; and
    what the view reads first (`preloads`), in the same hop."""

    def __init__(self, get_response: Callable[..., Any]) -> None:
        super().__init__(get_response)
        if self.async_mode:
            self.process_view = self.aprocess_view  # type: ignore[method-assign,assignment]

    async def aprocess_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponseBase | None:
        if not getattr(view_func, "login_required", True):
            return None
        if await sync_to_async(_is_authenticated)(request, view_func, view_kwargs):
            return None
        return self.handle_no_permission(request, view_func)


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
