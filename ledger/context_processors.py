from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from ledger.selectors import balance_for


def token_balance(request: HttpRequest) -> dict:
    """`token_balance` for the badge, read only when a template shows it."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"token_balance": SimpleLazyObject(lambda: balance_for(user))}
