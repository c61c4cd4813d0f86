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

A request's synchronous work runs in a thread of its own, as Django asks (its
ThreadSensitiveContext: the request's database connection belongs to that thread). Django's
handler makes that thread for each request and joins it at the end (about 1 ms of CPU, in the
event loop); here the threads are kept for the next requests (`RequestThreads`, through
asgiref's `ThreadSensitiveContext(executor=...)`), as a threaded WSGI server keeps its threads
(at most 32 idle, none idle for more than a minute). A request still has one thread to itself
while it runs; one cut short leaves its thread to finish what it runs, then end.

A request's body is refused with 413 before it is read when its declared length is over the
view's limit, and as soon as more than that arrives when it declares none (chunked): Django's
handler otherwise spools the whole body to memory and disk before any view can say no. The
limit is DATA_UPLOAD_MAX_MEMORY_SIZE, or the view's own for an upload (config.http.body_max_bytes).

What the first question would otherwise build is built at start-up, once per process: the
model's client package and its schemas when this module is imported, and at the ASGI lifespan's
start-up (uvicorn sends it before the first request) the model's client for this worker's event
loop and the compiled session templates; then what start-up built is left out of the garbage
collector's later passes (gc.freeze). At shutdown the client's connections are closed.
"""

import gc
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any

from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.base import BaseHandler
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.template.loader import get_template
from django.urls import Resolver404, get_resolver

from config.http import BODY_LIMIT_ATTR
from config.tracing import asgi_traced

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

logger = logging.getLogger(__name__)

# Compiled at start-up (the cached template loader keeps them): the question flow's page and
# fragments.
STARTUP_TEMPLATES = ("interviews/session.html", "base.html")


class RequestThreads:
    """One thread per request in flight, each kept, once its request is done, for a later one:
    at most `keep` idle threads, none idle longer than `idle_seconds` (past either, a thread
    gives its database connections back and ends: without the pool, DB_POOL_MAX_SIZE=0, an idle
    thread would otherwise hold its connection as long as it lives). Used from the event loop
    only."""

    def __init__(self, keep: int = 32, idle_seconds: float = 60.0) -> None:
        self.keep = keep
        self.idle_seconds = idle_seconds
        self._idle: deque[tuple[ThreadPoolExecutor, float]] = deque()  # oldest first

    def take(self) -> ThreadPoolExecutor:
        if self._idle:
            return self._idle.pop()[0]  # the most recently used: its stack and caches are warm
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        now = time.monotonic()
        self._idle.append((executor, now))
        while self._idle and (
            len(self._idle) > self.keep or now - self._idle[0][1] > self.idle_seconds
        ):
            self.end(self._idle.popleft()[0])

    @staticmethod
    def end(executor: ThreadPoolExecutor) -> None:
        """The thread gives its database connections back, once done with what it still runs,
        and ends."""
        executor.submit(connections.close_all)
        executor.shutdown(wait=False)

    def __len__(self) -> int:
        return len(self._idle)


class ASGIHandler(DjangoASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self.threads = RequestThreads()

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

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)  # Django's refusal
            return
        # The view, resolved once: for its body's limit here, and for its chain (_dispatch).
        scope[VIEW_KEY] = view = view_of(scope)
        if (limit := body_limit(scope, view)) is not None:
            most, refusal = limit
            if declared_length(scope) > most:
                await self.send_response(too_large(refusal()), send)
                return
            receive = body_capped(receive, most)
        # Django's __call__, with the request's thread taken from those kept.
        executor = self.threads.take()
        finished = False
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
            finished = True
        except BodyTooLarge:  # refused while the body was read: nothing ran in the thread
            finished = True
            assert limit is not None
            await self.send_response(too_large(limit[1]()), send)
        finally:
            if finished:
                self.threads.give_back(executor)
            else:
                # Cut short (cancelled, or an error past Django's handler): the thread may still
                # run this request's code, and its connection was not given back. It is not
                # kept (a later request would wait behind that code): it gives the connection
                # back once done, and ends.
                self.threads.end(executor)

    async def _dispatch(self, request: HttpRequest) -> HttpResponse:
        view = request.scope[VIEW_KEY]  # type: ignore[attr-defined]  # an ASGIRequest
        if view is not None and iscoroutinefunction(view):
            return await self._async_chain(request)
        return await self._sync_chain(request)


# Where __call__ keeps the request's view in its ASGI scope.
VIEW_KEY = "mockroom.view"


def view_of(scope: Any) -> Callable[..., Any] | None:
    """The view the request's path resolves to (Django caches the resolver), None if none does."""
    try:
        return get_resolver().resolve(scope["path"].removeprefix(scope.get("root_path", ""))).func
    except Resolver404:
        return None


class BodyTooLarge(Exception):
    """More of a body arrived than its view takes."""


def body_limit(scope: Any, view: Callable[..., Any] | None) -> tuple[int, Callable[[], str]] | None:
    """The most bytes the request's body may hold, and what a 413 says past it (written only
    when one is sent); None: no limit (DATA_UPLOAD_MAX_MEMORY_SIZE unset, or a method without a
    body)."""
    if scope["method"] in ("GET", "HEAD", "OPTIONS"):
        return None
    own = getattr(view, BODY_LIMIT_ATTR, None)
    if own is not None:
        most, refusal = own
        return most(), refusal
    if settings.DATA_UPLOAD_MAX_MEMORY_SIZE is None:
        return None
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE, _too_large_for_the_page


def _too_large_for_the_page() -> str:
    megabytes = round(settings.DATA_UPLOAD_MAX_MEMORY_SIZE / 1_000_000, 1)
    return (
        f"This request is larger than {megabytes:g} MB, the most this page takes: nothing was "
        "kept, and you were not charged."
    )


def declared_length(scope: Any) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            with suppress(ValueError):
                return int(value)
    return 0


def body_capped(receive: Callable[[], Awaitable[Any]], most: int) -> Callable[[], Awaitable[Any]]:
    """`receive`, raising BodyTooLarge as soon as the body's chunks add up to more than `most`."""
    received = 0

    async def capped() -> Any:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > most:
                raise BodyTooLarge
        return message

    return capped


def too_large(refusal: str) -> HttpResponse:
    response = HttpResponse(refusal, status=413, content_type="text/plain; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    response["Connection"] = "close"  # the rest of the body is never read
    return response


async def lifespan(receive: Any, send: Any) -> None:
    """The ASGI lifespan protocol: this worker's start-up and shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await started()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await stopping()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def started() -> None:
    """Build, in this worker's event loop, what the first question would otherwise build. Only
    an optimisation: whatever fails here is logged, and built when first needed instead."""
    from interviews import llm

    try:
        for name in STARTUP_TEMPLATES:
            get_template(name)
        with suppress(llm.LLMError):  # no model configured: the bank serves the questions
            llm.get_client()
    except Exception:
        logger.exception("start-up: the question flow is prepared when first used instead")
    # What start-up built (modules, templates, schemas, the URL resolver: about 190,000 objects
    # the garbage collector tracks) lives as long as the worker: the collector's full passes stop
    # scanning it again and again (each took tens of milliseconds, in the middle of a request).
    gc.collect()
    gc.freeze()


async def stopping() -> None:
    from interviews.llm.transport import close_clients

    with suppress(Exception):
        await close_clients()


def application_get() -> ASGIHandler:
    get_asgi_application()  # django.setup(), as Django's own entry point does
    from config.checks import checks_enforce

    checks_enforce()
    import interviews.llm  # noqa: F401  (the model's client package and its schemas, built now)

    # The code sandbox is probed as the server starts, not on a candidate's first run: where it
    # does not work, one warning line says why and the pages say code is not run.
    from interviews.execution import executor_get

    executor_get()
    return ASGIHandler()


# Inside OpenTelemetry's ASGI middleware when this worker traces (OTEL_EXPORTER_OTLP_ENDPOINT:
# deploy/gunicorn.conf.py started it after the fork); as it is otherwise.
application = asgi_traced(application_get())
