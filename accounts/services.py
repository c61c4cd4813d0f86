from django.conf import settings
from django.db import transaction

from accounts.models import User
from ledger.services import account_open


@transaction.atomic(durable=True)
def user_signup(*, email: str, password: str) -> User:
    """Create a candidate and their token account with the welcome grant, in one transaction."""
    user = User.objects.create_user(email=email, password=password)
    account_open(user=user, welcome_tokens=settings.WELCOME_TOKENS)
    return user
