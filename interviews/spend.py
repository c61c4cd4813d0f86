"""The global spend guard: every model call, from any server, first takes one from today's
budget (LLM_DAILY_CALL_BUDGET), so a flood of requests cannot run up an unbounded bill.

One conditional upsert per call, only when a budget is set: a row per UTC day, incremented
while it is below the budget. Past it the call is not made: questions answer 503 "not charged",
feedback falls back as when the model fails. Staff see the day's count on the admin index.
"""

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.utils import timezone

from config.db import connection_hand_back
from interviews.models import ModelCallDay

# Insert the day's row, or count one more call, but only while below the budget: concurrent
# callers on any server cannot all slip under it. No row comes back when the budget is spent.
_TAKE_SQL = f"""
INSERT INTO {ModelCallDay._meta.db_table} (day, calls) VALUES (%(day)s, 1)
ON CONFLICT (day) DO UPDATE SET calls = {ModelCallDay._meta.db_table}.calls + 1
WHERE {ModelCallDay._meta.db_table}.calls < %(budget)s
RETURNING calls
"""  # noqa: S608  (the table name comes from the model; values are parameters)


class BudgetSpent(Exception):
    """Today's model calls are used up."""


def model_call_take() -> None:
    """Count one model call against today's budget, or raise BudgetSpent. Free without one."""
    budget = settings.LLM_DAILY_CALL_BUDGET
    if budget <= 0:
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute(_TAKE_SQL, {"day": timezone.now().date(), "budget": budget})
            taken = cursor.fetchone() is not None
    finally:
        connection_hand_back()  # before the call is made
    if not taken:
        raise BudgetSpent(f"the daily budget of {budget} model calls is spent")


async def amodel_call_take() -> None:
    if settings.LLM_DAILY_CALL_BUDGET > 0:
        await sync_to_async(model_call_take)()


def model_call_count_get() -> tuple[int, int]:
    """(calls made today, the budget; 0 when there is none)."""
    calls = ModelCallDay.objects.filter(day=timezone.now().date()).values_list("calls", flat=True)
    return next(iter(calls), 0), settings.LLM_DAILY_CALL_BUDGET
