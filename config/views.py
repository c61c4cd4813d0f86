import hmac
import sys
from contextlib import suppress

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseNotFound,
    JsonResponse,
)
from django.shortcuts import redirect, render
from django.template import loader
from django.templatetags.static import static
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django.views.defaults import server_error as django_server_error
from django_htmx.http import reswap, retarget
from prometheus_client import CONTENT_TYPE_LATEST

from config.exposition import metrics_text
from config.limits import Limited, parse_rates, refusal
from config.metrics import Refusal, refusal_count

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
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics (README, "Metrics") for a scraper sending "Authorization: Bearer
    <METRICS_TOKEN>". Anyone else gets a bare 404 (no page rendered, nothing read), as does
    everyone while METRICS_TOKEN is unset."""
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "").encode()
    if not token or not hmac.compare_digest(given, f"Bearer {token}".encode()):
        return HttpResponseNotFound()
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)


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
    refusal_count(Refusal.DATABASE)
    if request.headers.get("HX-Request") == "true":
        html = f'<div class="alert alert-error" role="alert">{DATABASE_BUSY}</div>'
        response = reswap(retarget(HttpResponse(html, status=503), "#question-alert"), "innerHTML")
    else:
        template = loader.get_template("503.html")
        response = HttpResponse(template.render({"message": DATABASE_BUSY}), status=503)
    response["Retry-After"] = "5"
    return response


# The django-allauth views whose rate limit (ACCOUNT_RATE_LIMITS action) answers with our 429.
ALLAUTH_ACTIONS = {
    "account_signup": "signup",
    "accounts:signup": "signup",
    "account_login": "login",
    "accounts:login": "login",
    "account_reset_password": "reset_password",
    "account_reset_password_from_key": "reset_password_from_key",
    "account_change_password": "change_password",
    "account_email": "manage_email",
    "account_reauthenticate": "reauthenticate",
}


def allauth_retry_after(request: HttpRequest, action: str | None = None) -> int:
    """Seconds until django-allauth's limit for this view (or `action`) lets a request through
    again, at most: the longest window among its rates (allauth does not say which refused)."""
    from allauth.account import app_settings as allauth_settings

    limits = allauth_settings.RATE_LIMITS  # ours over allauth's defaults
    if action is None and request.resolver_match is not None:
        action = ALLAUTH_ACTIONS.get(request.resolver_match.view_name)
    texts = [limits.get(action)] if action in limits else list(limits.values())
    periods = []
    for text in texts:
        if isinstance(text, str) and text:
            with suppress(ImproperlyConfigured):
                periods += [r.period for r in parse_rates(text, keys=("user", "ip", "key"))]
    return max(periods, default=60)


def too_many_requests(request: HttpRequest, exception: Limited | None = None) -> HttpResponse:
    """handler429: the page for a request a rate limit refused, with Retry-After. django-allauth
    calls it with the request alone when its own limits (signup, login, password reset) refuse.
    """
    if exception is None:  # ours are counted where they are refused (config.limits)
        refusal_count(Refusal.RATE)
        exception = refusal("Too many attempts", allauth_retry_after(request))
    response = render(request, "429.html", {"message": exception.message}, status=429)
    response["Retry-After"] = str(exception.retry_after)
    return response
