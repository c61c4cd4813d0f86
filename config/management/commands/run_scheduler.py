"""The clock of the background work: enqueue each periodic task (config/schedule.py) when due.

Django's tasks framework runs tasks but has no notion of time. This loop supplies it, and stays
small on purpose:

- It only enqueues; the task worker (`manage.py db_worker`) runs the tasks, so a slow task never
  delays the clock, and more workers can be added.
- Which period has been enqueued lives in the database (config.models.ScheduledTask), so a
  restarted scheduler, or a second one started by mistake, enqueues nothing twice; a scheduler
  that was down when a period began enqueues that period's task once when it comes back.
- It wakes every few seconds and touches the database only when a period has begun, so a
  per-minute task starts within seconds of its minute. A database that is down is retried on
  the next tick; the scheduler does not exit.

A scheduler package (a cron-like beat) would bring its own schedule tables and admin for three
fixed schedules; this is a page of code that the tests cover.
"""

import logging
import signal
import time
from datetime import datetime
from types import FrameType

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from config.schedule import SCHEDULE
from config.services import periodic_enqueue_if_due, schedule_enqueue_due

logger = logging.getLogger("config.scheduler")

# How often the loop looks at the clock: the delay between a period's start and its enqueue.
TICK_SECONDS = 5


class Command(BaseCommand):
    help = (
        "Enqueue the periodic tasks when they are due, for the task worker to run. Run one "
        "next to the worker (make worker); several are safe: each period is enqueued once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once", action="store_true", help="enqueue what is due now, then exit (for cron)"
        )

    def handle(self, *args, once: bool, **options) -> None:
        if once:
            for result in schedule_enqueue_due():
                self.stdout.write(f"Enqueued {result.task.name} (task {result.id}).")
            return
        self._stopping = False
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)
        names = ", ".join(f"{p.task.name} every {p.every.total_seconds():.0f} s" for p in SCHEDULE)
        logger.info("run_scheduler: started: %s", names)
        enqueued_for: dict[str, datetime] = {}
        while not self._stopping:
            self._tick(enqueued_for)
            for _ in range(TICK_SECONDS):
                if self._stopping:
                    break
                time.sleep(1)
        logger.info("run_scheduler: stopped")

    def _tick(self, enqueued_for: dict[str, datetime]) -> None:
        """Claim and enqueue each task whose period this process has not handled yet."""
        close_old_connections()
        now = timezone.now()
        for periodic in SCHEDULE:
            period_start = periodic.period_start(now)
            if enqueued_for.get(periodic.name) == period_start:
                continue
            try:
                result = periodic_enqueue_if_due(periodic=periodic, now=now)
            except DatabaseError:
                logger.exception("run_scheduler: could not enqueue %s; retrying", periodic.name)
                close_old_connections()
                return
            enqueued_for[periodic.name] = period_start
            if result is not None:
                logger.info(
                    "run_scheduler: enqueued %s for %s (task %s)",
                    periodic.task.name,
                    period_start.isoformat(),
                    result.id,
                )
        close_old_connections()

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True
