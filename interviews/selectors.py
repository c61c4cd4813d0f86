"""Reads for the interview pages and the question flow. Nothing here writes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import Avg, Count, Q, QuerySet

from interviews.models import Answer, InterviewSession, Question, ServedQuestion, Topic

if TYPE_CHECKING:
    from accounts.models import User

RECENT_LIMIT = 30


@dataclass(frozen=True)
class PoolState:
    """Where a candidate stands in a topic's pool, read from the newest questions served only:
    one indexed query whatever the size of the pool or of the history."""

    cycle: int  # the current pass through the pool (1, 2, ...)
    recent: tuple[tuple[int, str], ...]  # (question id, text) newest first, for the LLM prompt

    @property
    def recent_texts(self) -> tuple[str, ...]:
        return tuple(text for _, text in self.recent)

    @property
    def last_question_id(self) -> int | None:
        return self.recent[0][0] if self.recent else None


def pool_served_list(*, user: User, topic: Topic) -> QuerySet[ServedQuestion]:
    return ServedQuestion.objects.filter(user=user, topic=topic)


def pool_state_get(*, user: User, topic: Topic) -> PoolState:
    # Newest first by id: ids grow in the order captures commit (one account lock at a time), and
    # passes only grow, so the newest question served belongs to the current pass.
    rows = list(
        pool_served_list(user=user, topic=topic)
        .order_by("-pk")
        .values_list("question_id", "cycle", "question__text")[:RECENT_LIMIT]
    )
    return PoolState(
        cycle=rows[0][1] if rows else 1,
        recent=tuple((question_id, text) for question_id, _, text in rows),
    )


def pool_cycle_get(*, user: User, topic: Topic) -> int:
    latest = pool_served_list(user=user, topic=topic).order_by("-pk").values_list("cycle")[:1]
    return next(iter(latest), (1,))[0]


@dataclass(frozen=True)
class PoolProgress:
    """ "N of M seen" in the current pass."""

    cycle: int
    seen: int
    size: int


# On the path of every question: written out, it costs a tenth of the CPU of the same query
# built by the ORM from three correlated subqueries. Three index lookups, whatever the history.
# Table names come from the models, values are parameters.
_POOL_PROGRESS_SQL = f"""
WITH pass AS (
    SELECT COALESCE((
        SELECT cycle FROM {ServedQuestion._meta.db_table}
        WHERE user_id = %(user)s AND topic_id = %(topic)s ORDER BY id DESC LIMIT 1
    ), 1) AS cycle
)
SELECT pass.cycle,
    (SELECT COUNT(*) FROM {ServedQuestion._meta.db_table}
     WHERE user_id = %(user)s AND topic_id = %(topic)s AND cycle = pass.cycle
       AND parent_id IS NULL),
    (SELECT COUNT(*) FROM {Question._meta.db_table}
     WHERE topic_id = %(topic)s AND is_active AND follows_id IS NULL)
FROM pass
"""  # noqa: S608


def pool_progress_get(*, user: User, topic: Topic) -> PoolProgress:
    """The candidate's progress through a topic's pool, in one query."""
    with connection.cursor() as cursor:
        cursor.execute(_POOL_PROGRESS_SQL, {"user": user.pk, "topic": topic.pk})
        cycle, seen, size = cursor.fetchone()
    return PoolProgress(cycle=cycle, seen=seen, size=size)


@dataclass(frozen=True)
class TopicProgress:
    topic: Topic
    seen: int
    size: int
    cycle: int


def topic_progress_list(*, user: User) -> list[TopicProgress]:
    """Every active topic with "N of M seen" in the candidate's current pass."""
    topics = list(
        Topic.objects.filter(is_active=True)
        .annotate(
            size=Count(
                "questions",
                filter=Q(questions__is_active=True, questions__follows__isnull=True),
            )
        )
        .order_by("order", "name")  # Meta.ordering does not apply to aggregate queries
    )
    # Distinct questions seen per pass, in one query; the latest pass of a topic wins.
    passes = (
        ServedQuestion.objects.filter(user=user, parent=None)
        .values_list("topic_id", "cycle")
        .annotate(seen=Count("question_id", distinct=True))
        .order_by("topic_id", "cycle")
    )
    cycles: dict[int, int] = {}
    seen: dict[int, int] = {}
    for topic_id, cycle, count in passes:
        cycles[topic_id], seen[topic_id] = cycle, count
    return [
        TopicProgress(topic=t, seen=seen.get(t.pk, 0), size=t.size, cycle=cycles.get(t.pk, 1))
        for t in topics
    ]


def session_list(*, user: User) -> QuerySet[InterviewSession]:
    return (
        InterviewSession.objects.filter(user=user)
        .select_related("topic")
        .annotate(question_count=Count("served", distinct=True))
        .order_by("-started_at")
    )


def session_get(*, user: User, session_id: uuid.UUID) -> InterviewSession:
    """The candidate's own session; another user's is DoesNotExist (a 404, never a 403)."""
    # With the candidate and their token account: the question flow needs both.
    return InterviewSession.objects.select_related("topic", "user__token_account").get(
        pk=session_id, user=user
    )


def served_question_list(*, session: InterviewSession) -> QuerySet[ServedQuestion]:
    return (
        ServedQuestion.objects.filter(session=session)
        .select_related("question", "debit", "answer", "topic")
        .order_by("position")
    )


def served_question_get(*, user: User, session_id: uuid.UUID, position: int) -> ServedQuestion:
    return ServedQuestion.objects.select_related(
        "question", "debit", "session", "topic", "answer"
    ).get(session_id=session_id, session__user=user, position=position)


@dataclass(frozen=True)
class SessionSummary:
    questions: int
    answered: int
    average_score: float | None


def session_summary_get(*, session: InterviewSession) -> SessionSummary:
    served = ServedQuestion.objects.filter(session=session)
    answers = Answer.objects.filter(served__session=session)
    scored = answers.exclude(score__isnull=True).aggregate(avg=Avg("score"))
    return SessionSummary(
        questions=served.count(),
        answered=answers.count(),
        average_score=round(scored["avg"], 1) if scored["avg"] is not None else None,
    )
