"""Responses every app's views share."""

from django.http import HttpResponseRedirect


def see_other(url: str) -> HttpResponseRedirect:
    """303: after a POST, the browser GETs the page (a reload does not resubmit)."""
    return HttpResponseRedirect(url, status=303)
