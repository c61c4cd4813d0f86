from django.http import HttpRequest

from ledger.selectors import account_balance_get


def token_balance(request: HttpRequest) -> dict:
    """`token_balance` for the badge that every logged-in page shows (one indexed lookup)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # Read once per response: a page and its out-of-band badge are rendered after any change
    # the request made, so both show the same stored balance.
    if not hasattr(request, "token_balance"):
        request.token_balance = account_balance_get(user=user)
    return {"token_balance": request.token_balance}
