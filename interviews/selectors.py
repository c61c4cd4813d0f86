"""Reads for the interview pages and the question flow. Nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.models import Avg, Count, Max, Q, QuerySet

from interviews.models import Answer, InterviewSession, Question, ServedQuestion, Topic

if TYPE_CHECKING:
    from accounts.models import User

RECENT_LIMIT = 30


@dataclass(frozen=True)
class PoolState:
    """Where a candidate stands in a topic's pool of questions."""

    cycle: int  # the current pass through the pool (1, 2, ...)
    seen_in_cycle: frozenset[int]  # question ids served in this pass
    served_fingerprints: frozenset[str]  # every wording ever served in this topic
    recent_texts: tuple[str, ...]  # newest first, for the LLM prompt
    size: int  # active questions in the pool

    @property
    def seen(self) -> int:
        return len(self.seen_in_cycle)


def current_cycle(*, user: User, topic: Topic) -> int:
    latest = ServedQuestion.objects.filter(user=user, topic=topic).aggregate(cycle=Max("cycle"))
    return latest["cycle"] or 1


def pool_state(*, user: User, topic: Topic) -> PoolState:
    served = ServedQuestion.objects.filter(user=user, topic=topic)
    history = list(
        served.order_by("-served_at", "-pk").values_list(
            "question_id", "cycle", "question__fingerprint", "question__text"
        )
    )
    cycle = max((c for _, c, _, _ in history), default=1)
    return PoolState(
        cycle=cycle,
        seen_in_cycle=frozenset(qid for qid, c, _, _ in history if c == cycle),
        served_fingerprints=frozenset(fp for _, _, fp, _ in history),
        recent_texts=tuple(text for _, _, _, text in history[:RECENT_LIMIT]),
        size=Question.objects.filter(topic=topic, is_active=True).count(),
    )


@dataclass(frozen=True)
class TopicProgress:
    topic: Topic
    seen: int
    size: int
    cycle: int


def topics_with_progress(*, user: User) -> list[TopicProgress]:
    """Every active topic with "N of M seen" in the candidate's current pass."""
    topics = list(
        Topic.objects.filter(is_active=True)
        .annotate(size=Count("questions", filter=Q(questions__is_active=True)))
        .order_by("order", "name")  # Meta.ordering does not apply to aggregate queries
    )
    # Distinct questions seen per pass, in one query; the latest pass of a topic wins.
    passes = (
        ServedQuestion.objects.filter(user=user)
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


def sessions_for(*, user: User) -> QuerySet[InterviewSession]:
    return (
        InterviewSession.objects.filter(user=user)
        .select_related("topic")
        .annotate(question_count=Count("served", distinct=True))
        .order_by("-started_at")
    )


def session_for(*, user: User, session_id) -> InterviewSession:
    """The candidate's own session; another user's is DoesNotExist (a 404, never a 403)."""
    return InterviewSession.objects.select_related("topic").get(pk=session_id, user=user)


def served_questions(*, session: InterviewSession) -> QuerySet[ServedQuestion]:
    return (
        ServedQuestion.objects.filter(session=session)
        .select_related("question", "debit", "answer", "topic")
        .order_by("position")
    )


def served_question_for(*, user: User, session_id, position: int) -> ServedQuestion:
    return ServedQuestion.objects.select_related(
        "question", "debit", "session", "topic", "answer"
    ).get(session_id=session_id, session__user=user, position=position)


@dataclass(frozen=True)
class SessionSummary:
    questions: int
    answered: int
    average_score: float | None


def session_summary(*, session: InterviewSession) -> SessionSummary:
    served = ServedQuestion.objects.filter(session=session)
    answers = Answer.objects.filter(served__session=session)
    scored = answers.exclude(score__isnull=True).aggregate(avg=Avg("score"))
    return SessionSummary(
        questions=served.count(),
        answered=answers.count(),
        average_score=round(scored["avg"], 1) if scored["avg"] is not None else None,
    )
