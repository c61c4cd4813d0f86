import sys
from contextlib import suppress

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template import loader
from django.templatetags.static import static
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django.views.defaults import server_error as django_server_error
from django_htmx.http import reswap, retarget

from config.limits import Limited, parse_rates, refusal

# What a request that could not reach the database is told. Nothing was charged: every change of
# a balance is one transaction, and a hold whose release could not be written expires by itself.
DATABASE_BUSY = (
    "Mockroom is busy right now and could not finish that. You were not charged. "
    "Please try again in a moment."
)


@login_not_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("interviews:dashboard")
    return render(request, "home.html", {"welcome_tokens": settings.WELCOME_TOKENS})


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """200 when the app and its database answer; 503 otherwise."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any database failure means "not healthy"
        return JsonResponse(
            {"status": "error", "database": str(exc.__class__.__name__)}, status=503
        )
    return JsonResponse({"status": "ok", "database": "ok"})


@login_not_required
@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on pages that name no icon: send them to ours."""
    return redirect(static("img/favicon.svg"), permanent=True)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a database that refuses, times out or drops a connection is a 503 "you were
    not charged, try again", with Retry-After; anything else is the plain 500 page.

    Rendered without the request's context processors: they would ask the database again.
    """
    if not isinstance(sys.exc_info()[1], DatabaseError):
        return django_server_error(request)
    if request.headers.get("HX-Request") == "true":
        html = f'<div class="alert alert-error" role="alert">{DATABASE_BUSY}</div>'
        response = reswap(retarget(HttpResponse(html, status=503), "#question-alert"), "innerHTML")
    else:
        template = loader.get_template("503.html")
        response = HttpResponse(template.render({"message": DATABASE_BUSY}), status=503)
    response["Retry-After"] = "5"
    return response


def _longest_account_period() -> int:
    """The longest window of django-allauth's rate limits (ACCOUNT_RATE_LIMITS), else 60 s:
    allauth asks for the 429 page without saying which limit refused or for how long."""
    limits = getattr(settings, "ACCOUNT_RATE_LIMITS", None)
    periods = []
    for text in limits.values() if isinstance(limits, dict) else ():
        if isinstance(text, str) and text:
            with suppress(ImproperlyConfigured):
                periods += [r.period for r in parse_rates(text, keys=("user", "ip", "key"))]
    return max(periods, default=60)


def too_many_requests(request: HttpRequest, exception: Limited | None = None) -> HttpResponse:
    """handler429: the page for a request a rate limit refused, with Retry-After. django-allauth
    calls it with the request alone when its own limits (signup, login, password reset) refuse.
    """
    if exception is None:
        exception = refusal("Too many attempts", _longest_account_period())
    response = render(request, "429.html", {"message": exception.message}, status=429)
    response["Retry-After"] = str(exception.retry_after)
    return response
