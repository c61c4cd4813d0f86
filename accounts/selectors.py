from django.conf import settings

from accounts.models import User, WelcomeGrant


def welcome_tokens_pending(*, user: User) -> bool:
    """True while the user's welcome tokens wait for a verified email address."""
    if settings.ACCOUNT_EMAIL_VERIFICATION == "none":
        return False
    return not WelcomeGrant.objects.filter(user=user).exists()
