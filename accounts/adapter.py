import logging
import smtplib

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context as allauth_context
from django.contrib import messages
from django.http import HttpRequest
from django.urls import reverse

from accounts.middleware import staff_needs_mfa

logger = logging.getLogger(__name__)


class AccountAdapter(DefaultAccountAdapter):
    """Mockroom's hooks into django-allauth (settings.ACCOUNT_ADAPTER)."""

    def get_login_redirect_url(self, request: HttpRequest) -> str:
        # Staff who must turn on two-factor authentication go straight to its setup.
        if staff_needs_mfa(request.user):
            return reverse("mfa_activate_totp")
        return super().get_login_redirect_url(request)

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        """A mail server that is down must not turn a signup or a reset into a server error:
        the account is kept, the failure is logged, and the page says to ask again later."""
        try:
            super().send_mail(template_prefix, email, context)
        except (smtplib.SMTPException, OSError) as exc:
            logger.error(
                "email %s not sent to a %s address: %s: %s",
                template_prefix.rsplit("/", 1)[-1],
                email.rpartition("@")[2],
                type(exc).__name__,
                exc,
            )
            request = allauth_context.request
            if request is not None and hasattr(request, "_messages"):
                messages.error(
                    request,
                    "We could not send you an email just now. Please ask for it again in a "
                    "few minutes (logging in sends a new verification link).",
                )
