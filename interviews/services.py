"""The candidate's actions: start a session, get the next question (paid), answer, end.

question_next is the token promise in code:

    hold_reserve            1 token reserved (or InsufficientTokens / replay / 409 / 422)
    model_call_slot         the LLM only: one of the candidate's in-flight model calls, or
                            Limited (429) and the hold released: not charged
    propose                 the bank or the LLM, NO transaction open and no database connection
                            held: a QuestionSpec (interviews.spec), or GenerationFailed; an
                            unusable or duplicate proposal is proposed again, free, a bounded
                            number of times
    hold_capture            debit + served question stored in one transaction
    on any failure          hold_release: not charged

`aquestion_next` is the flow itself, a coroutine: each database step is a short synchronous
call (`_db_step`) that hands its connection back to the pool when it ends, and the wait for the
model in between is asynchronous. `question_next` is the same for synchronous callers.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from config.db import connection_hand_back
from config.limits import Limited, in_flight
from interviews.exceptions import (
    AlreadyServed,
    FeedbackLimitReached,
    FeedbackUnavailable,
    GenerationFailed,
    PoolChanged,
    Reason,
    SessionEnded,
)
from interviews.feedback import Feedback, afeedback_get, feedback_calls_model
from interviews.generation import Proposal, QuestionSource, question_source_get
from interviews.models import (
    Answer,
    Difficulty,
    InterviewSession,
    Question,
    ServedQuestion,
    Topic,
    question_fingerprint,
)
from interviews.selectors import PoolState, pool_cycle_get, pool_state_get
from ledger.exceptions import HoldNotPending
from ledger.models import Hold, LedgerEntry
from ledger.services import account_get_or_open, hold_capture, hold_release, hold_reserve

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)

# How many times a capture may find that another request of the same candidate got there first
# (the same bank question drawn, the pool recycled) before giving up with 503. Each collision
# needs another capture committed since the last try, so with N requests of one candidate
# racing, a request collides at most N - 1 times: this is the most concurrent purchases of one
# candidate that are all served. (Model calls do not race like this: one in flight per user.)
MAX_POOL_COLLISIONS = 20
# Feedback is free, but each request can be an LLM call: a question gets this many at most.
MAX_FEEDBACK_REQUESTS = 10


# What a candidate over LLM_MAX_IN_FLIGHT_PER_USER is told, and when to try again (seconds).
IN_FLIGHT_REFUSED = "You already have a question or feedback being prepared"
IN_FLIGHT_RETRY_AFTER = 5


def model_call_slot(*, user_id: int, calls_model: bool) -> AbstractAsyncContextManager[None]:
    """One of the candidate's LLM_MAX_IN_FLIGHT_PER_USER model calls, all processes together,
    held for the body; Limited at once when they are all taken. The slot frees itself after
    HOLD_TTL_SECONDS (the longest a call may take) if its process dies."""
    if not calls_model:
        return nullcontext()
    return in_flight(
        f"model-calls:user:{user_id}",
        limit=settings.LLM_MAX_IN_FLIGHT_PER_USER,
        ttl=settings.HOLD_TTL_SECONDS,
        what=IN_FLIGHT_REFUSED,
        retry_after=IN_FLIGHT_RETRY_AFTER,
    )


def _db_step[**P, T](step: Callable[P, T]) -> Callable[P, T]:
    """A database step of a flow that waits on the model in between: it runs synchronously (in
    the request's thread) and gives its connection back to the pool when it ends, so that no
    connection is held while the model runs (config.db.connection_hand_back)."""

    @functools.wraps(step)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return step(*args, **kwargs)
        finally:
            connection_hand_back()

    return run


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


@_db_step
def _question_start(
    *, session: InterviewSession, request_id: str
) -> NextQuestion | tuple[Hold, PoolState]:
    """Reserve the token: a replay's question, or the hold and the pool to propose from."""
    if session.is_ended:
        # A request that finished before the session ended still replays its question.
        bought = ServedQuestion.objects.filter(session=session, hold__request_id=request_id)
        if served := bought.first():
            return NextQuestion(served=served, replay=True)
        raise SessionEnded("This session has ended. Start a new one for more questions.")
    user = session.user
    reservation = hold_reserve(
        account=account_get_or_open(user=user),
        request_id=request_id,
        purpose=f"question:{session.pk}",
        actor=user,
    )
    if reservation.replay:
        return NextQuestion(served=ServedQuestion.objects.get(hold=reservation.hold), replay=True)
    return reservation.hold, pool_state_get(user=user, topic=session.topic)


async def aquestion_next(
    *, session: InterviewSession, request_id: str, source: QuestionSource | None = None
) -> NextQuestion:
    """Buy the next question of a session for 1 token, or raise and charge nothing."""
    started = await sync_to_async(_question_start)(session=session, request_id=request_id)
    if isinstance(started, NextQuestion):
        return started
    hold, pool = started
    source = source or question_source_get()
    try:
        # Only a fresh reservation takes a slot: the page's poll of a request in progress (the
        # same request id) got its 409 from hold_reserve above, never a 429.
        async with model_call_slot(user_id=session.user_id, calls_model=source.calls_model):
            served = await _propose_and_capture(
                session=session, hold=hold, pool=pool, source=source
            )
    except BaseException as exc:
        note = _failure_note(exc)
        await sync_to_async(_release)(hold=hold, note=note, actor=session.user)
        # The one log line of a failed question: what failed and that it cost nothing.
        logger.warning("question_next: not charged, hold %s released: %s", hold.pk, note)
        if isinstance(exc, HoldNotPending):  # expired (or swept) while generating: free
            raise GenerationFailed(
                Reason.EXPIRED, "The question took too long to generate."
            ) from exc
        raise
    return NextQuestion(served=served, replay=False)


question_next = async_to_sync(aquestion_next)


@_db_step
def _release(*, hold: Hold, note: str, actor: User) -> None:
    with suppress(HoldNotPending):  # expired meanwhile: already freed
        hold_release(hold=hold, note=note, actor=actor)


def _failure_note(exc: BaseException) -> str:
    if isinstance(exc, Limited):
        return f"refused ({exc.message})"
    if isinstance(exc, GenerationFailed):
        return f"generation failed ({exc})"
    return f"error ({exc.__class__.__name__}: {exc})"


async def _propose_and_capture(
    *, session: InterviewSession, hold: Hold, pool: PoolState, source: QuestionSource
) -> ServedQuestion:
    regenerations = max(0, settings.LLM_MAX_REGENERATIONS)
    # Another request of the same candidate took the proposed question first: propose again.
    # Not the candidate's fault nor the model's, so it does not use up a regeneration.
    collisions = MAX_POOL_COLLISIONS
    while True:
        try:
            # No transaction open. The proposal's shape was checked when its spec was made.
            proposal = await source.propose(session=session, pool=pool)
        except GenerationFailed as exc:
            if not exc.regenerate:
                raise
            problem = str(exc)
        else:
            try:
                return await sync_to_async(_capture)(
                    session=session, hold=hold, proposal=proposal, pool=pool
                )
            except AlreadyServed as exc:
                problem = str(exc)
            except PoolChanged as exc:
                if collisions == 0:
                    raise GenerationFailed(Reason.BUSY, str(exc)) from exc
                collisions -= 1
                pool = await sync_to_async(_db_step(pool_state_get))(
                    user=session.user, topic=session.topic
                )
                continue
        if regenerations == 0:
            raise GenerationFailed(Reason.INVALID, f"no valid question: {problem}")
        regenerations -= 1
        logger.info("question_next: proposal rejected (%s); proposing again, free", problem)


@_db_step
def _capture(
    *, session: InterviewSession, hold: Hold, proposal: Proposal, pool: PoolState
) -> ServedQuestion:
    try:
        capture = hold_capture(
            hold=hold,
            reason=f"Question {session.topic.name} ({session.get_difficulty_display()})",
            record=lambda hold, debit: _store(
                session=session, proposal=proposal, pool=pool, hold=hold, debit=debit
            ),
            actor=session.user,
        )
    except IntegrityError as exc:
        # A concurrent request served this question, took this position or added this wording
        # first: the whole capture was rolled back and the hold is still pending.
        raise PoolChanged("another request changed the pool meanwhile") from exc
    return capture.record


def _store(
    *,
    session: InterviewSession,
    proposal: Proposal,
    pool: PoolState,
    hold: Hold,
    debit: LedgerEntry,
) -> ServedQuestion:
    """Inside the capture transaction, under the account lock: store what was bought.

    The database's unique constraints (a question once per pass, a position once per session, a
    wording once per topic) catch a concurrent request that got there first; raising rolls the
    whole capture back, and the flow proposes again.
    """
    user, topic = session.user, session.topic
    if pool_cycle_get(user=user, topic=topic) != pool.cycle:
        raise PoolChanged("the pool recycled meanwhile")
    question = proposal.question
    if question is None:
        # A generated question joins the topic's pool (the same wording is the same question).
        spec = proposal.spec
        fingerprint = question_fingerprint(spec.text)
        question = Question.objects.filter(topic=topic, fingerprint=fingerprint).first()
        if question is None:
            question = Question.objects.create(
                topic=topic,
                text=spec.text,
                key_points=list(spec.key_points),
                outline=spec.outline,
                difficulty=spec.difficulty,
                source=proposal.source,
                model=proposal.model,
            )
        elif ServedQuestion.objects.filter(question=question, user=user).exists():
            raise AlreadyServed("already served to this candidate in this topic")
    return ServedQuestion.objects.create(
        session=session,
        user=user,
        topic=topic,
        question=question,
        position=session.served.count() + 1,
        cycle=pool.cycle + 1 if proposal.pool_reset else pool.cycle,
        pool_reset_size=(
            Question.objects.filter(topic=topic, is_active=True, follows=None).count()
            if proposal.pool_reset
            else None
        ),
        hold=hold,
        debit=debit,
    )


@_db_step
def _feedback_request_take(*, served: ServedQuestion) -> Answer | None:
    """Count one feedback request before the model is asked, or refuse: one conditional update,
    so thirty requests at once make at most MAX_FEEDBACK_REQUESTS model calls. Returns the
    earlier answer, if any."""
    taken = ServedQuestion.objects.filter(
        pk=served.pk, feedback_requests__lt=MAX_FEEDBACK_REQUESTS
    ).update(feedback_requests=F("feedback_requests") + 1)
    if not taken:
        raise FeedbackLimitReached(
            f"You have had feedback on this question {MAX_FEEDBACK_REQUESTS} times, the most "
            "there is. Nothing was charged. Take the next question to keep practising."
        )
    return Answer.objects.filter(served=served).first()


async def aanswer_submit(*, served: ServedQuestion, text: str) -> Answer:
    """Store the answer with its feedback. Free: the question was paid for.

    When the feedback is unavailable and an earlier answer has feedback, nothing is replaced:
    FeedbackUnavailable is raised and the earlier answer stays. Limited when the candidate has
    LLM_MAX_IN_FLIGHT_PER_USER model calls running already.
    """
    # The candidate's in-flight slot first: a refused request does not use up a feedback request.
    async with model_call_slot(user_id=served.user_id, calls_model=feedback_calls_model()):
        earlier = await sync_to_async(_feedback_request_take)(served=served)
        # May call the LLM: no transaction open, no connection held.
        feedback = await afeedback_get(question=served.question, answer=text)
    return await sync_to_async(_answer_store)(
        served=served, earlier=earlier, text=text, feedback=feedback
    )


answer_submit = async_to_sync(aanswer_submit)


@_db_step
def _answer_store(
    *, served: ServedQuestion, earlier: Answer | None, text: str, feedback: Feedback
) -> Answer:
    if feedback.source == Answer.FeedbackSource.UNAVAILABLE and earlier and earlier.has_feedback:
        raise FeedbackUnavailable("Feedback is unavailable right now.")
    with transaction.atomic(durable=True):
        answer, _ = Answer.objects.update_or_create(
            served=served,
            defaults={
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
