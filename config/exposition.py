"""What GET /metrics answers (config.views.metrics): the counts of every process (config.metrics)
and, read from the database once per scrape by the process that serves it, what only the
database knows: pending holds and the oldest one's age, the task queues' depths, today's model
calls against the daily budget.

The database's gauges come from a collector registered only in this module's registry, so
nothing else that reads metrics runs its queries.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Min
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from interviews.spend import model_call_count_get
from ledger.models import Hold

logger = logging.getLogger(__name__)

# django-tasks' status of a task waiting for a worker.
READY = "READY"


class DatabaseCollector:
    """The gauges read from the database when scraped: three short indexed queries."""

    def collect(self) -> Iterator[Metric]:
        try:
            holds = Hold.objects.filter(status=Hold.Status.PENDING).aggregate(
                count=Count("pk"), oldest=Min("created_at")
            )
            queues = list(
                DBTaskResult.objects.filter(status=READY)
                .values("queue_name")
                .annotate(depth=Count("pk"), oldest=Min("enqueued_at"))
                .order_by()
            )
            calls_today, budget = model_call_count_get()
        except DatabaseError as exc:  # one line a scrape: the app's own errors say more
            logger.warning("metrics: the database did not answer (%s)", exc.__class__.__name__)
            yield GaugeMetricFamily(
                "mockroom_metrics_database_up",
                "Whether the database answered this scrape's queries (1) or not (0).",
                value=0,
            )
            return
        now = timezone.now()
        yield GaugeMetricFamily(
            "mockroom_metrics_database_up",
            "Whether the database answered this scrape's queries (1) or not (0).",
            value=1,
        )
        yield GaugeMetricFamily(
            "mockroom_holds_pending",
            "Tokens reserved for a question being prepared now (pending holds).",
            value=holds["count"],
        )
        oldest = holds["oldest"]
        yield GaugeMetricFamily(
            "mockroom_holds_pending_oldest_age_seconds",
            "Age of the oldest pending hold (0 without one); past HOLD_TTL_SECONDS the sweeper "
            "should have freed it.",
            value=(now - oldest).total_seconds() if oldest else 0.0,
        )
        yield GaugeMetricFamily(
            "mockroom_hold_ttl_seconds",
            "HOLD_TTL_SECONDS: how long a reservation may stay pending.",
            value=settings.HOLD_TTL_SECONDS,
        )
        depth = GaugeMetricFamily(
            "mockroom_task_queue_depth",
            "Background tasks waiting for a worker, by queue.",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "mockroom_task_queue_oldest_age_seconds",
            "Age of the oldest task waiting in the queue (0 when it is empty).",
            labels=["queue"],
        )
        waiting = {row["queue_name"]: row for row in queues}
        for name in sorted(set(settings.TASKS["default"].get("QUEUES", [])) | set(waiting)):
            row = waiting.get(name)
            depth.add_metric([name], row["depth"] if row else 0)
            age.add_metric([name], (now - row["oldest"]).total_seconds() if row else 0.0)
        yield depth
        yield age
        yield GaugeMetricFamily(
            "mockroom_model_calls_today",
            "Model calls counted against today's budget (UTC), all servers; counted only when "
            "LLM_DAILY_CALL_BUDGET is set.",
            value=calls_today,
        )
        yield GaugeMetricFamily(
            "mockroom_model_call_budget_daily",
            "LLM_DAILY_CALL_BUDGET: model calls allowed a day (0: no limit).",
            value=budget,
        )


class _ThisProcess:
    """The default registry (this process's metrics), as one collector of another registry."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def multiprocess() -> bool:
    """Whether prometheus_client keeps the values in PROMETHEUS_MULTIPROC_DIR's files (decided
    when it was first imported)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


@functools.cache
def registry_get() -> CollectorRegistry:
    """What a scrape reads: every process's files (multiprocess mode) or this process's
    registry, and the database's gauges. Made once per process."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess():
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())  # type: ignore[arg-type]
    registry.register(DatabaseCollector())  # type: ignore[arg-type]
    return registry


def metrics_text() -> bytes:
    """The scrape's answer, in Prometheus's text format."""
    return generate_latest(registry_get())
