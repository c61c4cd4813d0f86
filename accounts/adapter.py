from allauth.account.adapter import DefaultAccountAdapter


class AccountAdapter(DefaultAccountAdapter):
    """Mockroom's hooks into django-allauth (settings.ACCOUNT_ADAPTER)."""

    def get_login_redirect_url(self, request) -> str:
        # Staff who must turn on two-factor authentication go straight to its setup.
        from accounts.middleware import staff_needs_mfa

        if staff_needs_mfa(request.user):
            from django.urls import reverse

            return reverse("mfa_activate_totp")
        return super().get_login_redirect_url(request)
