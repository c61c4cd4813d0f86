"""Housekeeping of the background work itself."""

from django.core.management import call_command
from django.tasks import task

# Finished task results are kept this long for staff to look at (admin: Tasks Database Backend);
# failures longer, to be investigated.
KEEP_RESULTS_DAYS = 14
KEEP_FAILED_RESULTS_DAYS = 60


@task
def task_results_prune() -> None:
    """Delete old finished task results: expiring holds every minute alone leaves 1,440 a day."""
    call_command(
        "prune_db_task_results",
        queue_name="*",
        min_age_days=KEEP_RESULTS_DAYS,
        failed_min_age_days=KEEP_FAILED_RESULTS_DAYS,
    )
