"""What runs in the background, and how often. `manage.py run_scheduler` enqueues each task
once per period; the task worker (`manage.py db_worker`) runs it.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.tasks import Task

from accounts.tasks import sessions_clear_expired
from config.tasks import task_results_prune
from interviews.tasks import prepared_questions_discard
from ledger.tasks import holds_expire_due, ledger_verify
from payments.tasks import purchases_check

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Periodic:
    task: Task
    every: timedelta

    @property
    def name(self) -> str:
        return self.task.module_path

    def period_start(self, now: datetime) -> datetime:
        """The start of the period `now` falls in. Periods are counted from the Unix epoch, so
        every scheduler agrees on them, and a daily period starts at midnight UTC."""
        return EPOCH + (now - EPOCH) // self.every * self.every


SCHEDULE: tuple[Periodic, ...] = (
    # Reservations whose request died (also freed lazily when their account is next touched).
    Periodic(task=holds_expire_due, every=timedelta(minutes=1)),
    # Questions prepared in the background that nobody asked for in time.
    Periodic(task=prepared_questions_discard, every=timedelta(minutes=1)),
    # Purchases whose webhook never came, and paid ones not granted (alerts staff).
    Periodic(task=purchases_check, every=timedelta(minutes=5)),
    Periodic(task=sessions_clear_expired, every=timedelta(days=1)),
    # Alerts staff (an ERROR log line and an email) when an account does not reconcile.
    Periodic(task=ledger_verify, every=timedelta(days=1)),
    Periodic(task=task_results_prune, every=timedelta(days=1)),
)
