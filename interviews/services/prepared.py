"""The next question, prepared in the background (PREFETCH): never charged, never shown, bought
without a model call when the candidate asks and it is still good.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from config.metrics import PREPARED_QUESTIONS
from interviews.exceptions import (
    GenerationFailed,
)
from interviews.generation import (
    Proposal,
    question_source_get,
)
from interviews.models import (
    InterviewSession,
    PreparedQuestion,
    Question,
    ServedQuestion,
    question_fingerprint,
)
from interviews.selectors import (
    PoolState,
    pool_state_get,
)
from interviews.spec import QuestionSpec

if TYPE_CHECKING:
    pass


def prefetches(*, session: InterviewSession) -> bool:
    """Whether the session's next question is prepared in the background: PREFETCH on, and not
    a coding session (a problem is checked in the sandbox as it is bought, never ahead)."""
    return settings.PREFETCH and not session.topic.is_code


def prepare_later(*, session: InterviewSession) -> None:
    """Ask the task worker to prepare the session's next question (interviews.tasks)."""
    from interviews.tasks import question_prepare

    question_prepare.enqueue(session_id=str(session.pk))


def question_prepare(*, session_id: uuid.UUID) -> str:
    """Prepare the next question of an open session, not charged and not shown: the source's
    proposal, checked as a purchase would check it, stored as the session's one ready question.
    The model call counts in the daily budget (the LLM source takes it) but never in the
    candidate's limits: the candidate is not waiting. Returns what happened, for the task log."""
    if not settings.PREFETCH:
        return "off"
    session = InterviewSession.objects.select_related("topic", "user").filter(pk=session_id).first()
    if session is None or session.is_ended:
        return "no open session"
    if session.topic.is_code:  # a problem is checked in the sandbox as it is bought
        return "coding problems are not prepared ahead"
    if session.is_mock and ServedQuestion.objects.filter(session=session, parent=None).count() >= (
        session.length or 0
    ):
        return "the interview has all its questions"
    if PreparedQuestion.objects.filter(session=session, status=PreparedQuestion.Status.READY):
        return "one is ready already"
    pool = pool_state_get(user=session.user, topic=session.topic)
    try:
        proposal = async_to_sync(question_source_get().propose)(session=session, pool=pool)
    except GenerationFailed as exc:
        PREPARED_QUESTIONS.labels("not_prepared").inc()
        return f"not prepared: {exc}"
    spec = proposal.spec
    repeated = Question.objects.filter(
        topic=session.topic, fingerprint=question_fingerprint(spec.text)
    )
    if proposal.question is None and repeated.exists():
        PREPARED_QUESTIONS.labels("not_prepared").inc()
        return "not prepared: a repeat"
    try:
        with transaction.atomic(durable=True):
            PreparedQuestion.objects.create(
                session=session,
                question=proposal.question,
                **proposal.question_fields(),
                cycle=pool.cycle,
                asked_difficulty=session.difficulty,
            )
    except IntegrityError:
        return "one is ready already"
    PREPARED_QUESTIONS.labels("prepared").inc()
    return "prepared"


# The session's ready question (at most one: a unique constraint). Names from the model; its
# columns named, not *, so that a column added by a migration does not change what a statement
# prepared before it returns.
_READY_COLUMNS = ", ".join(
    connection.ops.quote_name(str(field.column)) for field in PreparedQuestion._meta.concrete_fields
)
_READY_SQL = f"""
SELECT {_READY_COLUMNS} FROM {PreparedQuestion._meta.db_table}
WHERE session_id = %s AND status = %s
ORDER BY id
LIMIT 1
"""  # noqa: S608


def prepared_take(*, session: InterviewSession, pool: PoolState) -> Proposal | None:
    """The session's prepared question as a proposal, taken (once: a conditional update), if it
    is fresh, at the session's difficulty and in the current pass; else it is discarded."""
    # Written out (as a raw query of the model, which still converts its columns): it runs for
    # every question, and the ORM spends several times more CPU composing it than the database
    # spends running it.
    session_id = InterviewSession._meta.pk.get_db_prep_value(session.pk, connection)
    ready = PreparedQuestion.objects.raw(_READY_SQL, [session_id, PreparedQuestion.Status.READY])
    prepared = next(iter(ready), None)
    if prepared is None:
        return None
    now = timezone.now()
    fresh = (
        prepared.created_at > now - timedelta(seconds=settings.PREFETCH_MAX_AGE_SECONDS)
        and prepared.asked_difficulty == session.difficulty
        and prepared.cycle == pool.cycle
    )
    status = PreparedQuestion.Status.TAKEN if fresh else PreparedQuestion.Status.DISCARDED
    taken = PreparedQuestion.objects.filter(
        pk=prepared.pk, status=PreparedQuestion.Status.READY
    ).update(status=status, resolved_at=now)
    if taken and not fresh:
        PREPARED_QUESTIONS.labels("discarded").inc()
    if not (taken and fresh):
        return None
    try:
        spec = QuestionSpec.parse(
            {
                "text": prepared.text,
                "key_points": prepared.key_points,
                "outline": prepared.outline,
                "difficulty": prepared.difficulty,
            }
        )
    except GenerationFailed:
        return None
    return Proposal(
        spec=spec, source=prepared.source, model=prepared.model, question=prepared.question
    )


def prepared_discard(*, session: InterviewSession | None = None) -> int:
    """Discard prepared questions nobody will buy: a session's (it ended), or every one older
    than PREFETCH_MAX_AGE_SECONDS (the scheduler, every minute)."""
    ready = PreparedQuestion.objects.filter(status=PreparedQuestion.Status.READY)
    if session is not None:
        ready = ready.filter(session=session)
    else:
        cutoff = timezone.now() - timedelta(seconds=settings.PREFETCH_MAX_AGE_SECONDS)
        ready = ready.filter(created_at__lt=cutoff)
    discarded = ready.update(status=PreparedQuestion.Status.DISCARDED, resolved_at=timezone.now())
    if discarded:
        PREPARED_QUESTIONS.labels("discarded").inc(discarded)
    return discarded
