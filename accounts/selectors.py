from accounts.models import User, WelcomeGrant


def welcome_grant_get(*, user: User) -> WelcomeGrant | None:
    """The account's welcome-token decision, or None while it waits for a verified email."""
    return WelcomeGrant.objects.filter(user=user).first()
