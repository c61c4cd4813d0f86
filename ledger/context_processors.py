from django.http import HttpRequest

from ledger.selectors import balance_for


def token_balance(request: HttpRequest) -> dict:
    """`token_balance` for the badge that every logged-in page shows (one indexed lookup)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"token_balance": balance_for(user)}
