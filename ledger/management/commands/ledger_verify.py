from typing import Any

from django.core.management.base import BaseCommand

from config.metrics import ledger_verify_count
from ledger.selectors import ledger_report_get


class Command(BaseCommand):
    help = (
        "Reconcile every account with its entries and holds. Exit 0 when all reconcile; "
        "otherwise list each broken account and exit 1."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = ledger_report_get()
        ledger_verify_count(problems=len(report.problems))
        if not report.problems:
            self.stdout.write(f"OK: {report.checked} account(s) reconcile.")
            return
        for problem in report.problems:
            self.stderr.write(str(problem))
        self.stderr.write(
            f"FAILED: {len(report.problems)} of {report.checked} account(s) do not reconcile."
        )
        raise SystemExit(1)
