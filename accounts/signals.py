"""django-allauth's account events, turned into Mockroom's: a token account at signup, and the
welcome tokens with the first verified email address (at signup when verification is off)."""

from allauth.account.models import EmailAddress
from allauth.account.signals import email_confirmed, user_signed_up
from django.conf import settings
from django.contrib import messages
from django.dispatch import receiver
from django.http import HttpRequest
from django.template.defaultfilters import pluralize

from accounts.models import User, WelcomeGrant
from accounts.selectors import welcome_grant_get
from accounts.services import welcome_grant_create
from ledger.services import account_open


def _tell(request: HttpRequest | None, grant: WelcomeGrant) -> None:
    if request is None:
        return
    if grant.tokens:
        messages.success(
            request,
            f"Welcome to Mockroom! You have {grant.tokens} token{pluralize(grant.tokens)}: "
            "1 token buys 1 question.",
        )
    else:
        messages.info(
            request,
            "This mailbox has already received its welcome tokens with another account, so "
            "this one starts with none. Ask the Mockroom team if that is a mistake.",
        )


@receiver(user_signed_up, dispatch_uid="accounts.user_signed_up")
def _on_signup(sender, request: HttpRequest | None, user: User, **kwargs) -> None:
    account_open(user=user, welcome_tokens=0)
    if settings.ACCOUNT_EMAIL_VERIFICATION == "none":
        _tell(request, welcome_grant_create(user=user, email=user.email))


@receiver(email_confirmed, dispatch_uid="accounts.email_confirmed")
def _on_email_confirmed(
    sender, request: HttpRequest | None, email_address: EmailAddress, **kwargs
) -> None:
    if welcome_grant_get(user=email_address.user) is None:  # the first verified address
        _tell(request, welcome_grant_create(user=email_address.user, email=email_address.email))
