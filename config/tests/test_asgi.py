"""The ASGI server's request path (config.asgi, config.middleware): a page runs in one thread
hop, the views that wait on the model run their middleware in the event loop, and nothing
there touches the database from the loop (Django's async-safety check stays on: it raises
SynchronousOnlyOperation, which would turn these answers into 500s)."""

import asyncio
import gc
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from asgiref import sync
from asgiref.testing import ApplicationCommunicator
from django.core.checks import run_checks
from django.test import AsyncClient, Client
from django.urls import reverse

from config.asgi import application
from config.checks import check_security_middleware
from interviews.models import Topic
from interviews.services import session_start

HTMX = {"HX-Request": "true"}


@contextmanager
def hops() -> Iterator[list[str]]:
    """The names of the functions sent to a thread (sync_to_async) while the block runs."""
    seen: list[str] = []
    real_call = sync.SyncToAsync.__call__

    async def counting(self, *args, **kwargs):
        func = getattr(self.func, "awaitable", self.func)  # an async_to_sync inside: its coroutine
        seen.append(getattr(func, "__qualname__", repr(func)))
        return await real_call(self, *args, **kwargs)

    sync.SyncToAsync.__call__ = counting  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        sync.SyncToAsync.__call__ = real_call  # type: ignore[method-assign]


def get_scope(path: str, cookies: str = "") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"cookie", cookies.encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def asgi_get(path: str, cookies: str = "") -> tuple[int, bytes]:
    """One GET through the production ASGI application, to its end (the response closed)."""
    communicator = ApplicationCommunicator(application, get_scope(path, cookies))
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(timeout=10)
    body = b""
    while True:
        message = await communicator.receive_output(timeout=10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(timeout=10)
    return start["status"], body


def test_the_async_safety_check_is_on():
    assert "DJANGO_ALLOW_ASYNC_UNSAFE" not in os.environ


@pytest.mark.django_db(transaction=True)
def test_a_page_runs_its_whole_middleware_chain_and_view_in_one_thread_hop(make_user):
    client = Client()
    client.force_login(make_user(tokens=3))
    cookies = f"sessionid={client.cookies['sessionid'].value}"
    with hops() as seen:
        status, body = sync.async_to_sync(asgi_get)("/tokens/", cookies)
    assert status == 200
    assert b'id="token-balance"' in body
    # Django's request_started signal and its closing of the response, and the chain: the
    # middleware and the view together. ServeStatic's middleware is async-only, so below it the
    # chain goes through asgiref once more (a nested hop into the same thread). The first hop
    # carries the first middleware's name when it is a function (Django's wrapper copies it).
    assert seen[0] == "Signal.asend.<locals>.sync_send"
    assert seen[-1] == "HttpResponseBase.close"
    assert len(seen[1:-1]) == 2, seen
    assert seen[-2] == "convert_exception_to_response.<locals>.inner", seen
    with hops() as seen:
        status, _ = sync.async_to_sync(asgi_get)("/no-such-page/", cookies)
    assert status == 404


def thread_connection(executor) -> object:
    """The database connection the thread of `executor` holds, if any."""
    from django.db import connection

    return executor.submit(lambda: connection.connection).result(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_requests_run_in_kept_threads_that_hold_no_connection_between_requests(make_user):
    """Django's handler makes a thread per request; here the thread is kept for the next one (as
    a threaded WSGI server keeps its threads), and gives its database connection back to the
    pool at the end of each request, even one cut short."""
    from django.core.signals import request_finished

    client = Client()
    client.force_login(make_user(tokens=3))
    cookies = f"sessionid={client.cookies['sessionid'].value}"
    threads: list[int] = []

    def finished(**kwargs: Any) -> None:
        threads.append(threading.get_ident())

    request_finished.connect(finished)
    try:
        for _ in range(3):
            assert sync.async_to_sync(asgi_get)("/tokens/", cookies)[0] == 200
    finally:
        request_finished.disconnect(finished)
    assert len(threads) == 3
    assert len(set(threads)) == 1, "each request made a thread of its own"
    assert threads[0] != threading.get_ident()
    kept, _ = application.threads._idle[-1]
    assert thread_connection(kept) is None

    async def cut_short() -> None:
        communicator = ApplicationCommunicator(application, get_scope("/tokens/", cookies))
        await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
        await communicator.receive_output(timeout=10)  # the response has started
        communicator.future.cancel()
        with suppress(asyncio.CancelledError):
            await communicator.future

    # A request cut short: its thread is not kept (a later request would wait behind what it
    # still runs); it gives its connection back to the pool, then ends.
    taken = []
    real_take = application.threads.take

    def take():
        taken.append(real_take())
        return taken[-1]

    application.threads.take = take  # type: ignore[method-assign]
    try:
        sync.async_to_sync(cut_short)()
    finally:
        del application.threads.take
    (executor,) = taken
    assert all(kept is not executor for kept, _ in application.threads._idle)
    for thread in list(executor._threads):
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert checked_out() == 0


def checked_out() -> int:
    """Connections of the pool handed out and not given back, this thread's aside."""
    from django.db import connection

    stats = connection.pool.get_stats()  # type: ignore[attr-defined]
    mine = 1 if connection.connection is not None else 0
    return stats["pool_size"] - stats["pool_available"] - mine


def test_idle_request_threads_end_past_their_number_or_their_age(monkeypatch):
    """At most `keep` idle threads, none idle longer than `idle_seconds`: an ending thread first
    gives its database connections back."""
    from config import asgi

    now = [1000.0]
    monkeypatch.setattr(asgi.time, "monotonic", lambda: now[0])
    ended = []
    monkeypatch.setattr(asgi.RequestThreads, "end", staticmethod(ended.append))
    threads = asgi.RequestThreads(keep=2, idle_seconds=60)
    first, second, third = (threads.take() for _ in range(3))
    assert len({first, second, third}) == 3
    for executor in (first, second, third):
        threads.give_back(executor)
    assert (len(threads), ended) == (2, [first])  # the oldest idle one
    assert threads.take() is third  # the most recently used first
    now[0] += 61
    threads.give_back(third)
    assert (len(threads), ended) == (1, [first, second])  # idle more than a minute
    for executor in (first, second, third):
        executor.shutdown()


@pytest.mark.django_db(transaction=True)
def test_the_views_that_wait_on_the_model_answer_with_their_middleware_in_the_loop(make_user):
    """A question, its answer with feedback, a follow-up and a mock report, all through the
    asynchronous middleware chain with the async-safety check on."""
    user = make_user(tokens=3)
    practice = session_start(user=user, topic=Topic.objects.get(slug="python"))
    mock = session_start(
        user=user, topic=Topic.objects.get(slug="python"), mode="mock", length=3, minutes=3
    )
    client = AsyncClient()
    sync.async_to_sync(client.aforce_login)(user)

    def post(path: str, data: dict[str, str]) -> int:
        return sync.async_to_sync(client.post)(path, data, headers=HTMX).status_code

    question = reverse("interviews:question_next", kwargs={"session_id": practice.pk})
    with hops() as seen:
        assert post(question, {"request_id": uuid.uuid4().hex}) == 200
    assert not any("process_request" in name or "process_response" in name for name in seen)
    # Django's request_started signal, the login check (session and user, and the session the
    # view names with @preloads), the reservation (with the pool and any prepared question),
    # the bank's pick, the capture (with the next question queued and what the card shows),
    # and Django's response close: one hop per short database step, none for a middleware,
    # none for the view's own session, none for the card and its badge (rendered in the loop
    # from what the capture returned: a query there would be stopped by the async-safety
    # check, and the card rendered in a thread, an eighth hop).
    assert seen == [
        "Signal.asend.<locals>.sync_send",
        "_is_authenticated",
        "_question_start",
        "BankSource.pick",
        "_capture",
        "HttpResponseBase.close",
    ], seen
    # Another candidate's session is a 404 from the login check's hop, nothing charged.
    other = session_start(user=make_user(tokens=3), topic=Topic.objects.get(slug="python"))
    elsewhere = reverse("interviews:question_next", kwargs={"session_id": other.pk})
    assert post(elsewhere, {"request_id": uuid.uuid4().hex}) == 404
    answer = reverse("interviews:answer", kwargs={"session_id": practice.pk, "position": 1})
    assert post(answer, {"text": "A generator yields values lazily, one at a time."}) == 200
    follow_up = reverse("interviews:follow_up", kwargs={"session_id": practice.pk, "position": 1})
    assert post(follow_up, {"request_id": uuid.uuid4().hex}) == 200
    report = reverse("interviews:report", kwargs={"session_id": mock.pk})
    assert post(report, {}) == 303
    # Signed out: the login check answers in the loop (a redirect, nothing charged).
    assert (
        sync.async_to_sync(AsyncClient().post)(question, {"request_id": "x" * 32}).status_code
        == 302
    )


def test_the_worker_builds_the_model_client_at_start_up_and_closes_it_at_shutdown(settings):
    """The ASGI lifespan (uvicorn sends it before the first request): the model's client for
    the worker's event loop and the session templates are ready before anyone asks."""
    import asyncio

    from asgiref.testing import ApplicationCommunicator

    from interviews.llm import transport

    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # never called: only built

    async def lifespan() -> tuple[str, int, str, int]:
        communicator = ApplicationCommunicator(application, {"type": "lifespan"})
        await communicator.send_input({"type": "lifespan.startup"})
        started = await communicator.receive_output(timeout=10)
        clients = len(transport._clients.get(asyncio.get_running_loop(), {}))
        await communicator.send_input({"type": "lifespan.shutdown"})
        stopped = await communicator.receive_output(timeout=10)
        left = len(transport._clients.get(asyncio.get_running_loop(), {}))
        return started["type"], clients, stopped["type"], left

    gc.unfreeze()
    try:
        assert sync.async_to_sync(lifespan)() == (
            "lifespan.startup.complete",
            1,
            "lifespan.shutdown.complete",
            0,
        )
        # What start-up built is left out of the collector's later passes.
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_the_security_middleware_deploy_check_asks_for_the_classes(settings):
    assert check_security_middleware() == []
    settings.MIDDLEWARE = [
        m for m in settings.MIDDLEWARE if not m.endswith(".XFrameOptionsMiddleware")
    ]
    assert [m.id for m in check_security_middleware()] == ["mockroom.W003"]
    assert not [m for m in run_checks() if m.id.startswith("security.W00")]


@pytest.mark.django_db(transaction=True)
def test_a_refused_csrf_token_on_the_views_that_wait_on_the_model_is_a_403(make_user):
    """The CSRF check runs in the event loop; its refusal page (with the badge's balance) is
    rendered in a thread: a 403 "Please reload", not a 500 from the async-safety check."""
    user = make_user(tokens=3)
    practice = session_start(user=user, topic=Topic.objects.get(slug="python"))
    client = AsyncClient(enforce_csrf_checks=True)
    sync.async_to_sync(client.aforce_login)(user)
    kwargs = {"session_id": practice.pk}
    for path in (
        reverse("interviews:question_next", kwargs=kwargs),
        reverse("interviews:answer", kwargs=kwargs | {"position": 1}),
        reverse("interviews:recording", kwargs=kwargs | {"position": 1}),
    ):
        response = sync.async_to_sync(client.post)(path, {"request_id": "x" * 32}, headers=HTMX)
        assert response.status_code == 403, (path, response.status_code)
        assert b"Please reload the page" in response.content
    assert user.token_account.entries.filter(kind="debit").count() == 0


def post_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return get_scope(path) | {"method": "POST", "headers": [(b"host", b"testserver"), *headers]}


async def refused_early(path: str, headers: list[tuple[bytes, bytes]], chunks: int) -> tuple:
    """POST `chunks` chunks of 1 MB (more to come after each) and see what the server answers:
    (status, body, chunks sent before it answered)."""
    communicator = ApplicationCommunicator(application, post_scope(path, headers))
    sent = 0
    for _ in range(chunks):
        await communicator.send_input(
            {"type": "http.request", "body": b"x" * 1_000_000, "more_body": True}
        )
        sent += 1
        if not await communicator.receive_nothing(timeout=0.2):
            break
    start = await communicator.receive_output(timeout=10)
    body = await communicator.receive_output(timeout=10)
    await communicator.wait(timeout=10)
    return start["status"], body["body"], sent


@pytest.mark.django_db(transaction=True)
def test_a_body_over_its_views_limit_is_refused_before_it_is_read(make_user, settings):
    """413 with what was wrong, before the body is read: at once when the declared length is
    over the view's limit (a recording: RECORDING_MAX_BYTES; any other view:
    DATA_UPLOAD_MAX_MEMORY_SIZE), and as soon as a body with no length (chunked) passes it."""
    settings.RECORDING_MAX_BYTES = 2_000_000
    practice = session_start(user=make_user(tokens=3), topic=Topic.objects.get(slug="python"))
    kwargs = {"session_id": practice.pk}
    recording = reverse("interviews:recording", kwargs=kwargs | {"position": 1})
    declared = [(b"content-type", b"multipart/form-data; boundary=x")]
    status, body, sent = sync.async_to_sync(refused_early)(
        recording, [*declared, (b"content-length", b"100000000")], chunks=100
    )
    assert (status, sent) == (413, 1)
    assert b"Your recording is larger than 2 MB" in body
    # No length declared: read until it passes the limit (2 MB and the form's 64 KB), no further.
    status, body, sent = sync.async_to_sync(refused_early)(recording, declared, chunks=100)
    assert (status, sent) == (413, 3)
    assert b"Your recording is larger than 2 MB" in body
    # Any other view: DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default).
    question = reverse("interviews:question_next", kwargs=kwargs)
    status, body, sent = sync.async_to_sync(refused_early)(
        question, [(b"content-length", b"3000000")], chunks=3
    )
    assert (status, sent) == (413, 1)
    assert b"This request is larger than 2.6 MB" in body
    assert practice.user.token_account.entries.filter(kind="debit").count() == 0
