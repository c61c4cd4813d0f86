"""The candidate's actions: start a session, get the next question (paid), answer, end.

question_next is the token promise in code:

    hold_reserve            1 token reserved (or InsufficientTokens / replay / 409 / 422)
    propose + validate      the bank or the LLM, NO transaction open; invalid or duplicate
                            proposals are proposed again, free, a bounded number of times
    hold_capture            debit + served question stored in one transaction
    on any failure          hold_release: not charged
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from interviews.exceptions import (
    FeedbackLimitReached,
    FeedbackUnavailable,
    GenerationFailed,
    PoolChanged,
    SessionEnded,
)
from interviews.feedback import feedback_for
from interviews.generation import Proposal, QuestionSource, question_source
from interviews.models import (
    KEY_POINTS_MAX,
    KEY_POINTS_MIN,
    QUESTION_MAX_CHARS,
    Answer,
    Difficulty,
    InterviewSession,
    Question,
    ServedQuestion,
    Topic,
    question_fingerprint,
)
from interviews.selectors import PoolState, current_cycle, pool_state
from ledger.exceptions import HoldNotPending
from ledger.models import Hold, LedgerEntry
from ledger.services import account_get_or_open, hold_capture, hold_release, hold_reserve

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)

MAX_POOL_COLLISIONS = 5
# Feedback is free, but each request can be an LLM call: a question gets this many at most.
MAX_FEEDBACK_REQUESTS = 10


@transaction.atomic(durable=True)
def session_start(
    *, user: User, topic: Topic, difficulty: str = Difficulty.MEDIUM
) -> InterviewSession:
    return InterviewSession.objects.create(user=user, topic=topic, difficulty=difficulty)


@transaction.atomic(durable=True)
def session_end(*, session: InterviewSession) -> InterviewSession:
    if session.ended_at is None:
        session.ended_at = timezone.now()
        session.save(update_fields=["ended_at"])
    return session


@dataclass(frozen=True)
class NextQuestion:
    served: ServedQuestion
    replay: bool  # the same request id again: the question it already bought, not charged again


def question_next(
    *, session: InterviewSession, request_id: str, source: QuestionSource | None = None
) -> NextQuestion:
    """Buy the next question of a session for 1 token, or raise and charge nothing."""
    if session.is_ended:
        # A request that finished before the session ended still replays its question.
        bought = ServedQuestion.objects.filter(session=session, hold__request_id=request_id)
        if served := bought.first():
            return NextQuestion(served=served, replay=True)
        raise SessionEnded("This session has ended. Start a new one for more questions.")
    user = session.user
    reservation = hold_reserve(
        account=account_get_or_open(user),
        request_id=request_id,
        purpose=f"question:{session.pk}",
        actor=user,
    )
    if reservation.replay:
        return NextQuestion(served=ServedQuestion.objects.get(hold=reservation.hold), replay=True)
    hold = reservation.hold
    try:
        served = _propose_and_capture(
            session=session, hold=hold, source=source or question_source()
        )
    except BaseException as exc:
        note = _failure_note(exc)
        with suppress(HoldNotPending):  # expired meanwhile: already freed
            hold_release(hold=hold, note=note, actor=user)
        # The one log line of a failed question: what failed and that it cost nothing.
        logger.warning("question_next: not charged, hold %s released: %s", hold.pk, note)
        if isinstance(exc, HoldNotPending):  # expired (or swept) while generating: free
            raise GenerationFailed("expired", "The question took too long to generate.") from exc
        raise
    return NextQuestion(served=served, replay=False)


def _failure_note(exc: BaseException) -> str:
    if isinstance(exc, GenerationFailed):
        return f"generation failed ({exc})"
    return f"error ({exc.__class__.__name__}: {exc})"


def _propose_and_capture(
    *, session: InterviewSession, hold: Hold, source: QuestionSource
) -> ServedQuestion:
    regenerations = max(0, settings.LLM_MAX_REGENERATIONS)
    # Another request of the same candidate took the proposed question first: propose again.
    # Not the candidate's fault nor the model's, so it does not use up a regeneration.
    collisions = MAX_POOL_COLLISIONS
    while True:
        pool = pool_state(user=session.user, topic=session.topic)
        try:
            proposal = source.propose(session=session, pool=pool)  # no transaction open
            problem = _problem_with(proposal, pool)
        except GenerationFailed as exc:
            if not exc.regenerate:
                raise
            problem = str(exc)
        if not problem:
            try:
                return _capture(session=session, hold=hold, proposal=proposal, pool=pool)
            except PoolChanged as exc:
                if collisions == 0:
                    raise GenerationFailed("busy", str(exc)) from exc
                collisions -= 1
                continue
        if regenerations == 0:
            raise GenerationFailed("invalid", f"no valid question: {problem}")
        regenerations -= 1
        logger.info("question_next: proposal rejected (%s); proposing again, free", problem)


def _capture(
    *, session: InterviewSession, hold: Hold, proposal: Proposal, pool: PoolState
) -> ServedQuestion:
    reset = ""
    if proposal.pool_reset:
        reset = (
            f"{session.topic.name}: all {pool.size} questions seen; the pool recycles "
            f"(pass {pool.cycle + 1})."
        )
    capture = hold_capture(
        hold=hold,
        reason=f"Question {session.topic.name} ({session.get_difficulty_display()})",
        record=lambda hold, debit: _store(
            session=session, proposal=proposal, pool=pool, hold=hold, debit=debit
        ),
        pool_reset=reset,
        actor=session.user,
    )
    return capture.record


def _problem_with(proposal: Proposal, pool: PoolState) -> str:
    """Why a proposal cannot be served ("" when it can)."""
    text = proposal.text.strip()
    if not text:
        return "empty question"
    if len(text) > QUESTION_MAX_CHARS:
        return "question too long"
    if proposal.difficulty not in Difficulty.values:
        return "unknown difficulty"
    if not KEY_POINTS_MIN <= len(proposal.key_points) <= KEY_POINTS_MAX:
        return "key points missing"
    if proposal.question is None and question_fingerprint(text) in pool.served_fingerprints:
        return "already served to this candidate in this topic"
    served_in_pass = proposal.question is not None and proposal.question.pk in pool.seen_in_cycle
    if served_in_pass and not proposal.pool_reset:
        return "already served in this pass through the pool"
    return ""


def _store(
    *,
    session: InterviewSession,
    proposal: Proposal,
    pool: PoolState,
    hold: Hold,
    debit: LedgerEntry,
) -> ServedQuestion:
    """Inside the capture transaction, under the account lock: store what was bought."""
    user, topic = session.user, session.topic
    if current_cycle(user=user, topic=topic) != pool.cycle:
        raise PoolChanged("the pool recycled meanwhile")
    question = proposal.question
    if question is None:
        # A generated question joins the topic's pool (the same wording is the same question).
        question, _ = Question.objects.get_or_create(
            topic=topic,
            fingerprint=question_fingerprint(proposal.text),
            defaults={
                "text": proposal.text.strip(),
                "key_points": proposal.key_points,
                "outline": proposal.outline,
                "difficulty": proposal.difficulty,
                "source": proposal.source,
                "model": proposal.model,
            },
        )
    cycle = pool.cycle + 1 if proposal.pool_reset else pool.cycle
    if ServedQuestion.objects.filter(
        user=user, topic=topic, cycle=cycle, question=question
    ).exists():
        raise PoolChanged("another request served this question meanwhile")
    return ServedQuestion.objects.create(
        session=session,
        user=user,
        topic=topic,
        question=question,
        position=session.served.count() + 1,
        cycle=cycle,
        hold=hold,
        debit=debit,
    )


def answer_submit(*, served: ServedQuestion, text: str) -> Answer:
    """Store the answer with its feedback. Free: the question was paid for.

    When the feedback is unavailable and an earlier answer has feedback, nothing is replaced:
    FeedbackUnavailable is raised and the earlier answer stays.
    """
    earlier = Answer.objects.filter(served=served).first()
    asked = (earlier.feedback_requests if earlier else 0) + 1
    if asked > MAX_FEEDBACK_REQUESTS:
        raise FeedbackLimitReached(
            f"You have had feedback on this question {MAX_FEEDBACK_REQUESTS} times, the most "
            "there is. Take the next question to keep practising."
        )
    feedback = feedback_for(question=served.question, answer=text)  # may call the LLM: no tx
    if feedback.source == Answer.FeedbackSource.UNAVAILABLE and earlier and earlier.has_feedback:
        with transaction.atomic(durable=True):
            Answer.objects.filter(pk=earlier.pk).update(
                feedback_requests=F("feedback_requests") + 1
            )
        raise FeedbackUnavailable("Feedback is unavailable right now.")
    with transaction.atomic(durable=True):
        answer, _ = Answer.objects.update_or_create(
            served=served,
            defaults={
                "feedback_requests": asked,
                "text": text,
                "score": feedback.score,
                "covered": feedback.covered,
                "missed": feedback.missed,
                "strengths": feedback.strengths,
                "gaps": feedback.gaps,
                "outline": feedback.outline,
                "feedback_source": feedback.source,
            },
        )
    return answer
