from django.core.management.base import BaseCommand

from ledger.services import holds_expire


class Command(BaseCommand):
    help = "Expire reservations past their expiry, freeing the tokens they held (run from cron)."

    def handle(self, *args, **options) -> None:
        expired = holds_expire()
        self.stdout.write(f"Expired {expired} hold(s).")
