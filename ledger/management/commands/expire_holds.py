from typing import Any

from django.core.management.base import BaseCommand

from ledger.services import hold_expire_due


class Command(BaseCommand):
    help = "Expire reservations past their expiry, freeing the tokens they held (run from cron)."

    def handle(self, *args: Any, **options: Any) -> None:
        expired = hold_expire_due()
        self.stdout.write(f"Expired {expired} hold(s).")
