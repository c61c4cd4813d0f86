"""Responses and limits every app's views share."""

from collections.abc import Callable
from typing import Any

from django.http import HttpResponseRedirect

BODY_LIMIT_ATTR = "body_limit"


def see_other(url: str) -> HttpResponseRedirect:
    """303: after a POST, the browser GETs the page (a reload does not resubmit)."""
    return HttpResponseRedirect(url, status=303)


def body_max_bytes[V: Callable[..., Any]](
    limit: Callable[[], int], refusal: Callable[[], str]
) -> Callable[[V], V]:
    """Mark a view that takes a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE (an upload):
    `limit()` bytes at most, and `refusal()` said with the 413 past it. The ASGI server refuses
    a larger body before reading it (config.asgi); every other view's limit is
    DATA_UPLOAD_MAX_MEMORY_SIZE."""

    def mark(view: V) -> V:
        setattr(view, BODY_LIMIT_ATTR, (limit, refusal))
        return view

    return mark
