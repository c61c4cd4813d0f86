from django.db import models


class ScheduledTask(models.Model):
    """A periodic task, and the period it was last enqueued for.

    Claiming a period is a conditional UPDATE of this row (only from an earlier period), so
    however many schedulers run, and however often they restart, a task is enqueued at most once
    per period: the database decides, not any scheduler's memory.
    """

    name = models.CharField(max_length=255, unique=True, help_text="the task's module path")
    period_start = models.DateTimeField(help_text="start of the last period it was enqueued for")
    enqueued_at = models.DateTimeField()
    task_result_id = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"{self.name} (last enqueued for {self.period_start:%Y-%m-%d %H:%M} UTC)"
