from allauth.account.decorators import secure_admin_login
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import include, path
from django.utils.http import url_has_allowed_host_and_scheme

from config import views
from interviews import views as interviews_views
from payments import views as payments_views


@secure_admin_login
def admin_login(request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
    """The admin's login is the site's (django-allauth: its rate limits and the second factor,
    never a way around them). Django's own admin login form is never shown: an anonymous
    visitor is sent to the site's login, a logged-in non-staff user is refused (403), and staff
    go on to where they were going."""
    next_url = request.GET.get(REDIRECT_FIELD_NAME, "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = ""
    return redirect(next_url or "admin:index")


admin.site.login = admin_login  # type: ignore[method-assign]  # allauth's recipe

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
    path("favicon.ico", views.favicon),
    path("accounts/", include("accounts.urls")),
    path("accounts/", include("allauth.urls")),
    path("progress/", interviews_views.progress, name="progress"),
    path("interviews/", include("interviews.urls")),
    path("tokens/buy/", include("payments.urls")),
    path("tokens/", include("ledger.urls")),
    path("payments/stripe/webhook/", payments_views.stripe_webhook, name="stripe_webhook"),
    path(settings.ADMIN_URL, admin.site.urls),
]

handler500 = "config.views.server_error"
# Not one of Django's handlers: django-allauth renders its rate limits' refusals with it.
handler429 = "config.views.too_many_requests"
