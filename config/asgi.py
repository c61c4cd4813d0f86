"""ASGI entry point: Django's ASGI handler, choosing per request how the request runs.

Under ASGI, Django runs each hook of each middleware built on MiddlewareMixin through a thread
(sync_to_async): about a dozen thread hops a request, which made an ordinary page cost up to
twice its CPU under the WSGI server. Here:

- a request for a synchronous view (every page but the few that wait on the model) runs the
  whole middleware chain and the view in ONE thread hop, exactly as under WSGI: Django's own
  synchronous chain, loaded once at start-up;
- a request for a coroutine view (the question, follow-up, feedback and report views, which
  wait seconds on the model) runs Django's asynchronous chain, so the wait holds no thread; its
  middleware run in the event loop where they do no I/O (config.middleware), and its database
  work runs in one short hop per step.

Which chain a request takes is decided by resolving its path (Django caches the resolver); a
path that does not resolve takes the synchronous chain (the 404 page, APPEND_SLASH).
"""

import os
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class ASGIHandler(DjangoASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=True)
        self._async_chain: Callable[[HttpRequest], Awaitable[HttpResponse]] = self._middleware_chain  # type: ignore[has-type]
        pages = BaseHandler()
        pages.load_middleware(is_async=False)
        self._sync_chain = sync_to_async(
            pages._middleware_chain,  # type: ignore[attr-defined]
            thread_sensitive=True,
        )
        self._middleware_chain = self._dispatch

    async def _dispatch(self, request: HttpRequest) -> HttpResponse:
        try:
            view = get_resolver().resolve(request.path_info).func
        except Resolver404:
            return await self._sync_chain(request)
        if iscoroutinefunction(view):
            return await self._async_chain(request)
        return await self._sync_chain(request)


def application_get() -> ASGIHandler:
    get_asgi_application()  # django.setup(), as Django's own entry point does
    return ASGIHandler()


application = application_get()
