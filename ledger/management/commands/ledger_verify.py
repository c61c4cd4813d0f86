from django.core.management.base import BaseCommand
from django.db import connection, transaction

from ledger.models import TokenAccount
from ledger.selectors import ledger_problems


class Command(BaseCommand):
    help = (
        "Reconcile every account with its entries and holds. Exit 0 when all reconcile; "
        "otherwise list each broken account and exit 1."
    )

    def handle(self, *args, **options) -> None:
        # One snapshot for all the queries: a question bought meanwhile must not look like a
        # mismatch between an account and its holds.
        outermost = not connection.in_atomic_block
        with transaction.atomic():
            if outermost and connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            problems = ledger_problems()
            checked = TokenAccount.objects.count()
        if not problems:
            self.stdout.write(f"OK: {checked} account(s) reconcile.")
            return
        for problem in problems:
            self.stderr.write(str(problem))
        self.stderr.write(f"FAILED: {len(problems)} of {checked} account(s) do not reconcile.")
        raise SystemExit(1)
