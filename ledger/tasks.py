"""Background work of the ledger, run by the task worker (`make worker`) on the schedule in
config/schedule.py. Each task is a thin call into a service or a selector, so that the
management commands, the request path and the worker share one implementation.
"""

import logging

from django.tasks import task

from config.alerts import staff_email
from config.metrics import ledger_verify_count
from ledger.selectors import AccountProblem, ledger_report_get
from ledger.services import hold_expire_due

logger = logging.getLogger(__name__)


@task
def holds_expire_due() -> int:
    """Free the tokens of reservations whose request died. Holds are also expired lazily when
    their account is touched; this returns the tokens of candidates who do not come back."""
    return hold_expire_due()


@task
def ledger_verify() -> int:
    """Reconcile every account with its entries and holds; on a mismatch, alert staff.

    Returns the number of accounts that do not reconcile. The alert is an ERROR log line naming
    the accounts (for whatever watches the logs) and an email to every active staff member (the
    people who can act on it, and who exist as soon as there is an admin; ADMINS need not be
    configured).
    """
    report = ledger_report_get()
    ledger_verify_count(problems=len(report.problems))
    if report.problems:
        summary = f"{len(report.problems)} of {report.checked} account(s) do not reconcile"
        logger.error("ledger_verify: %s: %s", summary, " | ".join(str(p) for p in report.problems))
        _alert_staff(summary=summary, problems=report.problems)
    else:
        logger.info("ledger_verify: %d account(s) reconcile", report.checked)
    return len(report.problems)


def _alert_staff(*, summary: str, problems: list[AccountProblem]) -> None:
    body = "\n".join(
        [
            f"The daily ledger check found that {summary}:",
            "",
            *(str(problem) for problem in problems),
            "",
            "`manage.py ledger_verify` checks again; each account's entries are in the admin.",
        ]
    )
    staff_email(subject=f"Ledger check failed: {summary}", body=body)
