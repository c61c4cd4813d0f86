"""Background work of payments, run by the task worker on the schedule in config/schedule.py."""

import logging

from django.conf import settings
from django.tasks import task

from config.alerts import staff_email
from payments.services import purchases_recheck

logger = logging.getLogger(__name__)


@task
def purchases_check() -> int:
    """Ask the provider about purchases left open (a webhook that never came) and grant those it
    says are paid; alert staff (an ERROR line and an email) about paid purchases still not
    granted after 15 minutes. Returns how many were reported."""
    if settings.PAYMENTS_PROVIDER == "none":
        return 0
    report = purchases_recheck()
    if report.checked:
        logger.info(
            "purchases_check: %d open purchase(s) re-checked, %d granted",
            report.checked,
            report.granted,
        )
    if report.unfulfilled:
        summary = f"{len(report.unfulfilled)} paid purchase(s) not granted after 15 minutes"
        logger.error("purchases_check: %s: %s", summary, " | ".join(report.unfulfilled))
        staff_email(
            subject=summary,
            body="\n".join(
                [
                    f"{summary}:",
                    "",
                    *report.unfulfilled,
                    "",
                    "Each is in the admin (Payments > Purchases): 're-check with Stripe' asks "
                    "again; the events list shows why one failed ('reprocess').",
                ]
            ),
        )
    return len(report.unfulfilled)
