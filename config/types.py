from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from accounts.models import User


class HtmxHttpRequest(HttpRequest):
    """A request that went through django-htmx's middleware (for type checkers). Only the
    candidate's pages, which require login, take one: its user is a User."""

    htmx: HtmxDetails
    user: User


class AuthenticatedHttpRequest(HttpRequest):
    """A request to a page that requires login (every page but the public ones): its user is
    a User, never AnonymousUser (for type checkers)."""

    user: User
