from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ledger import services
from ledger.exceptions import LedgerError
from ledger.models import LedgerEntry


def _positive_int(value: str) -> int:
    message = f"AMOUNT must be a whole number from 1 to {services.MAX_AMOUNT:,}, not {value!r}."
    try:
        amount = int(value)
    except ValueError:
        raise CommandError(message) from None
    if not 0 < amount <= services.MAX_AMOUNT:
        raise CommandError(message)
    return amount


class Command(BaseCommand):
    help = "Grant tokens to a user, as a ledger entry with a reason."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", help="the user's email address")
        parser.add_argument("amount", help="tokens to grant (a whole number above 0)")
        parser.add_argument("--reason", required=True, help="why (shown to staff and the user)")

    def handle(self, *args: Any, email: str, amount: str, reason: str, **options: Any) -> None:
        tokens = _positive_int(amount)
        if not reason.strip():
            raise CommandError("--reason must not be empty.")
        user = get_user_model().objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"No user with the email {email!r}.")
        try:
            entry = services.account_grant(
                account=services.account_get_or_open(user=user),
                amount=tokens,
                actor=None,
                source=LedgerEntry.Source.COMMAND,
                reason=reason,
            )
        except LedgerError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Granted {tokens} token(s) to {user.email}: balance {entry.balance_after} "
            f"(entry {entry.pk})."
        )
