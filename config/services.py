"""Enqueueing the periodic tasks (schedule.py) when they are due."""

from datetime import datetime

from django.db import transaction
from django.tasks import TaskResult
from django.utils import timezone

from config.models import ScheduledTask
from config.schedule import SCHEDULE, Periodic


def periodic_enqueue_if_due(*, periodic: Periodic, now: datetime) -> TaskResult | None:
    """Enqueue the task unless it was already enqueued for the period `now` falls in.

    The claim (a conditional UPDATE, which waits on a concurrent one's row lock and then sees its
    result) and the enqueue (a row of the database task backend) commit together: a task is
    enqueued exactly once per period, even with several schedulers or a crash in between.
    Returns the enqueued task's result, or None when the period was already taken.
    """
    period_start = periodic.period_start(now)
    with transaction.atomic():
        _, created = ScheduledTask.objects.get_or_create(
            name=periodic.name, defaults={"period_start": period_start, "enqueued_at": now}
        )
        claimed = created or ScheduledTask.objects.filter(
            name=periodic.name, period_start__lt=period_start
        ).update(period_start=period_start, enqueued_at=now)
        if not claimed:
            return None
        result = periodic.task.enqueue()
        ScheduledTask.objects.filter(name=periodic.name).update(task_result_id=str(result.id))
    return result


def schedule_enqueue_due(
    *, now: datetime | None = None, schedule: tuple[Periodic, ...] = SCHEDULE
) -> list[TaskResult]:
    """Enqueue every periodic task that is due; returns what was enqueued."""
    now = now or timezone.now()
    enqueued = (periodic_enqueue_if_due(periodic=periodic, now=now) for periodic in schedule)
    return [result for result in enqueued if result is not None]
