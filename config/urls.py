from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from config import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon),
    path("accounts/", include("accounts.urls")),
    path("interviews/", include("interviews.urls")),
    path("tokens/", include("ledger.urls")),
    path(settings.ADMIN_URL, admin.site.urls),
]

handler500 = "config.views.server_error"
# Not one of Django's handlers: django-allauth renders its rate limits' refusals with it.
handler429 = "config.views.too_many_requests"
