from django.http import HttpRequest

from ledger.selectors import account_balance_get

# Where the balance read for this response is kept on the request.
BALANCE_ATTR = "_ledger_token_balance"


def balance_known(request: HttpRequest, balance: int) -> None:
    """The balance this response shows is already known (a debit's balance_after, read in the
    transaction that wrote it): the page and its badge show it without reading it again."""
    setattr(request, BALANCE_ATTR, balance)


def token_balance(request: HttpRequest) -> dict[str, int]:
    """`token_balance` for the badge that every logged-in page shows (one indexed lookup)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # Read once per response: a page and its out-of-band badge are rendered after any change
    # the request made, so both show the same stored balance.
    balance: int | None = getattr(request, BALANCE_ATTR, None)
    if balance is None:
        balance = account_balance_get(user=user)
        setattr(request, BALANCE_ATTR, balance)
    return {"token_balance": balance}
