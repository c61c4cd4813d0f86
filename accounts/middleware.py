from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.decorators import sync_and_async_middleware


def staff_needs_mfa(user) -> bool:
    """Staff (with STAFF_MFA_REQUIRED on) who have not turned on two-factor authentication."""
    if not (settings.STAFF_MFA_REQUIRED and user.is_authenticated and user.is_staff):
        return False
    from allauth.mfa.models import Authenticator

    return not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


@sync_and_async_middleware
def staff_mfa_middleware(get_response: Callable) -> Callable:
    """The admin opens to staff only once they have two-factor authentication: a staff member
    without it is sent to set it up (STAFF_MFA_REQUIRED). The admin's own login page is
    django-allauth's (config/urls.py), so the second factor is asked for at every login."""
    admin_prefix = f"/{settings.ADMIN_URL}"

    def refusal(request: HttpRequest) -> HttpResponse | None:
        if not staff_needs_mfa(request.user):
            return None
        messages.warning(
            request,
            "Staff need two-factor authentication to use the admin: set it up here, then "
            "open the admin again.",
        )
        return redirect("mfa_activate_totp")

    if iscoroutinefunction(get_response):

        async def amiddleware(request: HttpRequest) -> HttpResponse:
            response = None
            if request.path.startswith(admin_prefix):
                response = await sync_to_async(refusal)(request)
            return response or await get_response(request)

        return amiddleware

    def middleware(request: HttpRequest) -> HttpResponse:
        response = refusal(request) if request.path.startswith(admin_prefix) else None
        return response or get_response(request)

    return middleware
