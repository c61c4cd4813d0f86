"""Sign-up and login are django-allauth's views (config/urls.py mounts them under /accounts/);
these subclasses only give a refused form the status it deserves, so that scripts and tests can
tell a refusal from a page: 400 for an invalid form, 429 with Retry-After when the failed-login
limit stops an attempt before the password is even checked."""

from allauth.account import app_settings as allauth_settings
from allauth.account import views as allauth_views
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.forms import AccountDeleteForm
from accounts.services import user_delete
from config.types import AuthenticatedHttpRequest
from config.views import allauth_retry_after


class SignupView(allauth_views.SignupView):
    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        context["verification_required"] = allauth_settings.EMAIL_VERIFICATION != "none"
        return context

    def form_invalid(self, form) -> HttpResponse:
        response = super().form_invalid(form)
        response.status_code = 400
        return response


class LoginView(allauth_views.LoginView):
    def form_invalid(self, form) -> HttpResponse:
        response = super().form_invalid(form)
        codes = {error.code for error in form.errors.as_data().get("__all__", [])}
        if "too_many_login_attempts" in codes:
            response.status_code = 429
            response["Retry-After"] = str(allauth_retry_after(self.request, "login_failed"))
        else:
            response.status_code = 400
        return response


@require_http_methods(["GET"])
def profile(request: AuthenticatedHttpRequest) -> HttpResponse:
    context = {
        "email_verified": EmailAddress.objects.filter(user=request.user, verified=True).exists(),
        "verification_required": allauth_settings.EMAIL_VERIFICATION != "none",
        "mfa_on": Authenticator.objects.filter(
            user=request.user, type=Authenticator.Type.TOTP
        ).exists(),
    }
    return render(request, "accounts/profile.html", context)


@require_http_methods(["GET", "POST"])
def account_delete(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Delete your account: your password and the word DELETE, so that neither a stray click
    nor someone at an unlocked screen can do it."""
    form = AccountDeleteForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        user = request.user
        logout(request)
        user_delete(user=user)
        messages.success(request, "Your account is deleted. Thank you for practising with us.")
        return redirect("home")
    status = 400 if form.errors else 200
    return render(request, "accounts/delete.html", {"form": form}, status=status)
