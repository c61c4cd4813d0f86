"""The request id (the X-Request-ID header): on every log line of a request, in its response,
and in the background tasks it enqueues, whose lines carry it too.

Not to be confused with the question flow's form field `request_id` (the idempotency key of a
"next question" click): this one only names a request in the logs and in error reports.

- `request_id_middleware` takes the id from the request's X-Request-ID when it is a sane one (a
  proxy or a load balancer may set it), else makes one, keeps it in config.logging.REQUEST_ID
  (a context variable, read by the logging filter and the error reports) and echoes it in the
  response. It does no I/O, so it runs in the event loop under ASGI: no thread hop.
- `DatabaseBackend` (settings.TASKS) is django-tasks-db's, whose tasks carry the id: enqueued
  with it as the keyword argument TASK_KWARG, bound again when the task starts (its "Task ...
  RUNNING" and "... SUCCESSFUL" lines included), and taken out before the function is called.
"""

import re
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.tasks import Task
from django.tasks.base import TaskResult
from django.tasks.signals import log_task_started, task_finished, task_started
from django.utils.decorators import sync_and_async_middleware
from django_tasks_db.backend import DatabaseBackend as TasksDatabaseBackend

from config.logging import REQUEST_ID

HEADER = "X-Request-ID"
# An incoming id is kept when it is 1 to 128 of these characters (a UUID, a hex or base64
# token, nginx's $request_id, AWS's Root=1-...); anything else is replaced by a new one.
_VALID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")
# The keyword argument a task is enqueued with (stored with its arguments, shown in the admin).
TASK_KWARG = "x_request_id"


def request_id_from(header: str | None) -> str:
    """The header's id when it is valid, else a new one (32 hex digits)."""
    if header and _VALID.fullmatch(header):
        return header
    return uuid.uuid4().hex


@sync_and_async_middleware
def request_id_middleware(get_response: Callable) -> Callable:
    """First in MIDDLEWARE: every line logged while the request is handled carries its id, and
    so do the server's access line and Django's 4xx/5xx warnings written after it."""

    def bind(request: HttpRequest) -> str:
        request_id = request_id_from(request.META.get("HTTP_X_REQUEST_ID"))
        # Not reset when the response leaves: the access line comes after. Each request runs in
        # a task (ASGI) or a thread turn (WSGI) of its own and sets its id before anything else.
        REQUEST_ID.set(request_id)
        return request_id

    if iscoroutinefunction(get_response):

        async def amiddleware(request: HttpRequest) -> HttpResponseBase:
            request_id = bind(request)
            response = await get_response(request)
            response[HEADER] = request_id
            return response

        return amiddleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        request_id = bind(request)
        response = get_response(request)
        response[HEADER] = request_id
        return response

    return middleware


class RequestIdTask(Task):
    """A task whose function never sees TASK_KWARG (the worker binds it: task_bind)."""

    __slots__ = ()

    def call(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop(TASK_KWARG, None)
        return super().call(*args, **kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop(TASK_KWARG, None)
        return await super().acall(*args, **kwargs)


def _with_request_id(kwargs: dict[str, Any]) -> dict[str, Any]:
    request_id = REQUEST_ID.get()
    if request_id is None or TASK_KWARG in kwargs:
        return kwargs
    return {**kwargs, TASK_KWARG: request_id}


class DatabaseBackend(TasksDatabaseBackend):
    """django-tasks-db's backend; a task enqueued while a request (or a task) is handled
    carries its request id."""

    task_class = RequestIdTask

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        task_started.connect(task_bind, dispatch_uid="config.requestid.bind")
        task_finished.connect(task_unbind, dispatch_uid="config.requestid.unbind")
        # Django logs "Task ... RUNNING" from a receiver of its own, connected first: moved
        # after ours, so that line carries the id too.
        task_started.disconnect(log_task_started)
        task_started.connect(log_task_started)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> Any:
        return super().enqueue(task, args, _with_request_id(kwargs))

    async def aenqueue(self, task: Task, args: Any, kwargs: Any) -> Any:
        return await super().aenqueue(task, args, _with_request_id(kwargs))


def task_bind(sender: object, task_result: TaskResult, **kwargs: object) -> None:
    """A task of this backend starts: its lines carry the id of the request that enqueued it
    (or none)."""
    if not isinstance(task_result.task, RequestIdTask):
        return
    request_id = task_result.kwargs.get(TASK_KWARG)
    REQUEST_ID.set(request_id if isinstance(request_id, str) else None)


def task_unbind(sender: object, task_result: TaskResult, **kwargs: object) -> None:
    """A task of this backend finished (its last line is written): the worker's next lines
    carry no id."""
    if isinstance(task_result.task, RequestIdTask):
        REQUEST_ID.set(None)
