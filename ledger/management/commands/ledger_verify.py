from django.core.management.base import BaseCommand

from ledger.models import TokenAccount
from ledger.selectors import ledger_problems


class Command(BaseCommand):
    help = (
        "Reconcile every account with its entries and holds. Exit 0 when all reconcile; "
        "otherwise list each broken account and exit 1."
    )

    def handle(self, *args, **options) -> None:
        problems = ledger_problems()
        checked = TokenAccount.objects.count()
        if not problems:
            self.stdout.write(f"OK: {checked} account(s) reconcile.")
            return
        for problem in problems:
            self.stderr.write(str(problem))
        self.stderr.write(f"FAILED: {len(problems)} of {checked} account(s) do not reconcile.")
        raise SystemExit(1)
