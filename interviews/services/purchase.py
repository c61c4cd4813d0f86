"""The purchases: the next question and a follow-up, each paid as received.

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
call (`db_step`) that hands its connection back to the pool when it ends, and the wait for the
model in between is asynchronous. `question_next` is the same for synchronous callers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import IntegrityError

from config.limits import Limited
from config.logging import exception_message_safe
from config.metrics import PREPARED_QUESTIONS, QUESTIONS_SERVED
from interviews.exceptions import (
    AlreadyServed,
    FollowUpRefused,
    GenerationFailed,
    PoolChanged,
    Reason,
    SessionEnded,
)
from interviews.generation import (
    FollowUpSource,
    Proposal,
    QuestionSource,
    follow_up_source_get,
    question_source_get,
)
from interviews.models import (
    FOLLOW_UP_DEPTH_MAX,
    Answer,
    InterviewSession,
    Question,
    ServedQuestion,
    question_fingerprint,
)
from interviews.selectors import (
    PoolProgress,
    PoolState,
    capture_state_get,
    mock_question_open,
    pool_state_get,
)
from ledger.exceptions import HoldNotPending
from ledger.models import Hold, LedgerEntry
from ledger.services import account_get_or_open, hold_capture, hold_release, hold_reserve

if TYPE_CHECKING:
    from accounts.models import User
from interviews.services.base import db_step, model_call_slot
from interviews.services.mock import mock_question_check
from interviews.services.prepared import prefetches, prepare_later, prepared_take

logger = logging.getLogger(__name__)


# How many times a capture may find that another request of the same candidate got there first
# (the same bank question drawn, the pool recycled) before giving up with 503. Each collision
# needs another capture committed since the last try, so with N requests of one candidate
# racing, a request collides at most N - 1 times: this is the most concurrent purchases of one
# candidate that are all served. (Model calls do not race like this: one in flight per user.)
MAX_POOL_COLLISIONS = 20


@dataclass(frozen=True)
class NextQuestion:
    served: ServedQuestion
    replay: bool  # the same request id again: the question it already bought, not charged again
    # A question just bought: the pool's progress as its capture left it (read in the capture's
    # transaction, so the page shows it without reading it again). None for a replay and for a
    # follow-up (it does not count in the pool).
    progress: PoolProgress | None = None


@dataclass(frozen=True)
class _Captured:
    served: ServedQuestion  # with its question and debit, its `label` set, no answer yet
    progress: PoolProgress


@db_step
def _question_start(
    *, session: InterviewSession, request_id: str
) -> NextQuestion | tuple[Hold, PoolState, Proposal | None]:
    """Reserve the token: a replay's question, or the hold, the pool to propose from and the
    question prepared in the background if there is a good one (one database step)."""
    if session.is_ended:
        # A request that finished before the session ended still replays its question.
        bought = ServedQuestion.objects.filter(session=session, hold__request_id=request_id)
        if served := bought.first():
            return NextQuestion(served=served, replay=True)
        raise SessionEnded("This session has ended. Start a new one for more questions.")
    if session.is_mock:
        # Checked before reserving (no model call for a question that would be refused), and
        # again under the account lock in the capture (_store), where concurrent requests queue.
        bought = ServedQuestion.objects.filter(session=session, hold__request_id=request_id)
        if served := bought.first():
            return NextQuestion(served=served, replay=True)
        mock_question_check(session=session)
    held = _hold_or_replay(session=session, request_id=request_id, purpose=f"question:{session.pk}")
    if isinstance(held, NextQuestion):
        return held
    pool = pool_state_get(user=session.user, topic=session.topic)
    # Should taking the prepared question fail, the hold expires on its own: nothing charged.
    prepared = prepared_take(session=session, pool=pool) if prefetches(session=session) else None
    return held, pool, prepared


def _hold_or_replay(
    *, session: InterviewSession, request_id: str, purpose: str
) -> NextQuestion | Hold:
    """Reserve the token for a purchase in `session`; the same request id again is the
    question it already bought (a replay, not charged again)."""
    user = session.user
    reservation = hold_reserve(
        account=account_get_or_open(user=user), request_id=request_id, purpose=purpose, actor=user
    )
    if reservation.replay:
        return NextQuestion(served=ServedQuestion.objects.get(hold=reservation.hold), replay=True)
    return reservation.hold


async def aquestion_next(
    *, session: InterviewSession, request_id: str, source: QuestionSource | None = None
) -> NextQuestion:
    """Buy the next question of a session for 1 token, or raise and charge nothing."""
    started = await sync_to_async(_question_start)(session=session, request_id=request_id)
    if isinstance(started, NextQuestion):
        return started
    # A question prepared in the background, if still good, is bought without a model call.
    hold, pool, prepared = started
    source = source or question_source_get()
    async with _released_on_failure(hold=hold, actor=session.user, flow="question_next"):
        # Only a fresh reservation takes a slot: the page's poll of a request in progress (the
        # same request id) got its 409 from hold_reserve above, never a 429.
        calls_model = source.calls_model and prepared is None
        async with model_call_slot(user_id=session.user_id, calls_model=calls_model):
            captured = await _propose_and_capture(
                session=session, hold=hold, pool=pool, source=source, prepared=prepared
            )
    return NextQuestion(served=captured.served, replay=False, progress=captured.progress)


question_next = async_to_sync(aquestion_next)


@asynccontextmanager
async def _released_on_failure(*, hold: Hold, actor: User, flow: str) -> AsyncIterator[None]:
    """Whatever fails in the body, the hold is released: not charged."""
    try:
        yield
    except BaseException as exc:
        note = _failure_note(exc)
        await sync_to_async(_release)(hold=hold, note=note, actor=actor)
        # The one log line of a failed question: what failed and that it cost nothing.
        logger.warning("%s: not charged, hold %s released: %s", flow, hold.pk, note)
        if isinstance(exc, HoldNotPending):  # expired (or swept) while generating: free
            raise GenerationFailed(
                Reason.EXPIRED, "The question took too long to generate."
            ) from exc
        raise


# --- follow-ups ------------------------------------------------------------------------------


@db_step
def _follow_up_start(
    *, parent: ServedQuestion, request_id: str, source: FollowUpSource
) -> NextQuestion | tuple[Hold, Answer]:
    """A replay's follow-up; or FollowUpRefused / SessionEnded before anything is reserved; or
    the reserved token and the answer the follow-up probes."""
    session = parent.session
    # The same request id again: the follow-up it bought, whatever has changed since.
    bought = ServedQuestion.objects.filter(session=session, hold__request_id=request_id).first()
    if bought is not None and bought.parent_id == parent.pk:
        return NextQuestion(served=bought, replay=True)
    if session.is_ended:
        raise SessionEnded("This session has ended. Start a new one for more questions.")
    answer = Answer.objects.filter(served=parent).first()
    if answer is None:
        raise FollowUpRefused(
            "Answer this question first: the follow-up builds on your answer. Nothing was charged."
        )
    if session.is_mock and (
        parent.depth > 0 or ServedQuestion.objects.filter(parent=parent).exists()
    ):
        raise FollowUpRefused(
            "In a mock interview the interviewer asks one follow-up per question. Take the next "
            "question instead. Nothing was charged."
        )
    if session.is_mock and any(
        mock_question_open(served=item, session=session)
        for item in ServedQuestion.objects.filter(session=session, answer=None)
    ):
        raise FollowUpRefused(
            "Answer the open question first: a mock interview asks one question at a time. "
            "Nothing was charged."
        )
    if parent.depth >= FOLLOW_UP_DEPTH_MAX:
        raise FollowUpRefused(
            f"This is already a follow-up {FOLLOW_UP_DEPTH_MAX} deep, as deep as a chain goes. "
            "Take the next question instead. Nothing was charged."
        )
    if not source.has_follow_up(parent=parent):
        raise FollowUpRefused(
            "There is no follow-up left for this question. Take the next question instead. "
            "Nothing was charged."
        )
    held = _hold_or_replay(session=session, request_id=request_id, purpose=f"follow-up:{parent.pk}")
    if isinstance(held, NextQuestion):
        return held
    return held, answer


async def afollow_up_next(
    *, parent: ServedQuestion, request_id: str, source: FollowUpSource | None = None
) -> NextQuestion:
    """Buy a follow-up to an answered question for 1 token, or raise and charge nothing: the
    same two-phase purchase as a question (reserve, propose with no transaction open, capture
    with the debit), idempotent by request id, released on any failure."""
    source = source or follow_up_source_get()
    started = await sync_to_async(_follow_up_start)(
        parent=parent, request_id=request_id, source=source
    )
    if isinstance(started, NextQuestion):
        return started
    hold, answer = started
    async with (
        _released_on_failure(hold=hold, actor=parent.session.user, flow="follow_up_next"),
        model_call_slot(user_id=parent.user_id, calls_model=source.calls_model),
    ):
        served = await _propose_and_capture_follow_up(
            parent=parent, answer=answer, hold=hold, source=source
        )
    return NextQuestion(served=served, replay=False)


follow_up_next = async_to_sync(afollow_up_next)


async def _propose_and_capture_follow_up(
    *, parent: ServedQuestion, answer: Answer, hold: Hold, source: FollowUpSource
) -> ServedQuestion:
    async def propose() -> Proposal:
        return await source.propose_follow_up(parent=parent, answer=answer)

    async def capture(proposal: Proposal) -> ServedQuestion:
        return await sync_to_async(_capture_follow_up)(parent=parent, hold=hold, proposal=proposal)

    return await _proposed_until_captured(propose=propose, capture=capture, flow="follow_up_next")


@db_step
def _capture_follow_up(*, parent: ServedQuestion, hold: Hold, proposal: Proposal) -> ServedQuestion:
    session = parent.session
    try:
        capture = hold_capture(
            hold=hold,
            reason=f"Follow-up question {session.topic.name} ({session.get_difficulty_display()})",
            record=lambda hold, debit: _store_follow_up(
                parent=parent, proposal=proposal, hold=hold, debit=debit
            ),
            actor=session.user,
        )
    except IntegrityError as exc:
        raise PoolChanged("another request changed the session meanwhile") from exc
    QUESTIONS_SERVED.labels("follow_up", proposal.source).inc()
    return capture.record


def _store_follow_up(
    *, parent: ServedQuestion, proposal: Proposal, hold: Hold, debit: LedgerEntry
) -> ServedQuestion:
    """Inside the capture transaction: the follow-up, under its parent, one level deeper."""
    session = parent.session
    question = proposal.question
    if question is None:
        spec = proposal.spec
        if Question.objects.filter(
            topic_id=parent.topic_id, fingerprint=question_fingerprint(spec.text)
        ).exists():
            raise AlreadyServed("the follow-up repeats a question of the topic")
        question = Question.objects.create(
            topic_id=parent.topic_id,
            follows=parent.question,
            **proposal.question_fields(),
        )
    return ServedQuestion.objects.create(
        session=session,
        user_id=parent.user_id,
        topic_id=parent.topic_id,
        question=question,
        position=session.served.count() + 1,
        cycle=parent.cycle,
        parent=parent,
        depth=parent.depth + 1,
        hold=hold,
        debit=debit,
    )


@db_step
def _release(*, hold: Hold, note: str, actor: User) -> None:
    with suppress(HoldNotPending):  # expired meanwhile: already freed
        hold_release(hold=hold, note=note, actor=actor)


def _failure_note(exc: BaseException) -> str:
    if isinstance(exc, Limited):
        return f"refused ({exc.message})"
    if isinstance(exc, GenerationFailed):
        return f"generation failed ({exc})"
    # Kept in the ledger and logged: an unexpected exception's message may quote the answer a
    # follow-up was asked about, so only what config.logging deems safe.
    return f"error ({exc.__class__.__name__}: {exception_message_safe(exc)})"


async def _propose_and_capture(
    *,
    session: InterviewSession,
    hold: Hold,
    pool: PoolState,
    source: QuestionSource,
    prepared: Proposal | None = None,
) -> _Captured:
    taken = prepared  # bought (mockroom_prepared_questions) if it is the one captured

    async def propose() -> Proposal:
        nonlocal prepared
        if prepared is not None:  # the prepared question first; the source if it is refused
            proposal, prepared = prepared, None
            return proposal
        return await source.propose(session=session, pool=pool)

    async def capture(proposal: Proposal) -> _Captured:
        captured = await sync_to_async(_capture)(
            session=session, hold=hold, proposal=proposal, pool=pool
        )
        if proposal is taken:
            PREPARED_QUESTIONS.labels("bought").inc()
        return captured

    async def pool_changed() -> None:
        nonlocal pool
        pool = await sync_to_async(db_step(pool_state_get))(user=session.user, topic=session.topic)

    return await _proposed_until_captured(
        propose=propose, capture=capture, pool_changed=pool_changed, flow="question_next"
    )


async def _proposed_until_captured[T](
    *,
    propose: Callable[[], Awaitable[Proposal]],
    capture: Callable[[Proposal], Awaitable[T]],
    pool_changed: Callable[[], Awaitable[None]] | None = None,
    flow: str,
) -> T:
    """Propose, then capture: an unusable proposal (Reason.asks_again) or a repeat is proposed
    again, free, LLM_MAX_REGENERATIONS times; a capture that another request of the candidate
    beat (PoolChanged) is tried again without using one up, MAX_POOL_COLLISIONS times."""
    regenerations = max(0, settings.LLM_MAX_REGENERATIONS)
    # Another request of the same candidate took the proposed question first: propose again.
    # Not the candidate's fault nor the model's, so it does not use up a regeneration.
    collisions = MAX_POOL_COLLISIONS
    while True:
        try:
            # No transaction open. The proposal's shape was checked when its spec was made.
            proposal = await propose()
        except GenerationFailed as exc:
            if not exc.regenerate:
                raise
            problem = str(exc)
        else:
            try:
                return await capture(proposal)
            except AlreadyServed as exc:
                problem = str(exc)
            except PoolChanged as exc:
                if collisions == 0:
                    raise GenerationFailed(Reason.BUSY, str(exc)) from exc
                collisions -= 1
                if pool_changed is not None:
                    await pool_changed()
                continue
        if regenerations == 0:
            raise GenerationFailed(Reason.INVALID, f"no valid question: {problem}")
        regenerations -= 1
        logger.info("%s: proposal rejected (%s); proposing again, free", flow, problem)


@db_step
def _capture(
    *, session: InterviewSession, hold: Hold, proposal: Proposal, pool: PoolState
) -> _Captured:
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
    QUESTIONS_SERVED.labels("question", proposal.source).inc()
    if prefetches(session=session):  # in the same step: the next question starts being prepared
        try:
            prepare_later(session=session)
        except Exception:  # the question is bought: a prefetch that cannot start is only logged
            logger.exception("question_next: the next question could not be queued")
    return capture.record


def _store(
    *,
    session: InterviewSession,
    proposal: Proposal,
    pool: PoolState,
    hold: Hold,
    debit: LedgerEntry,
) -> _Captured:
    """Inside the capture transaction, under the account lock: store what was bought, and what
    the page shows with it (its number, the pool's progress: no need to read them again).

    The database's unique constraints (a question once per pass, a position once per session, a
    wording once per topic) catch a concurrent request that got there first; raising rolls the
    whole capture back, and the flow proposes again.
    """
    user, topic = session.user, session.topic
    if session.is_mock:
        mock_question_check(session=session)  # raising rolls the capture back: not charged
    question = proposal.question
    # A generated question joins the topic's pool (the same wording is the same question).
    fingerprint = question_fingerprint(proposal.spec.text) if question is None else None
    # The pass, the session's counts, the pool's progress and any question of the topic with
    # this wording, in one query under the lock.
    state = capture_state_get(session=session, fingerprint=fingerprint)
    if state.cycle != pool.cycle:
        raise PoolChanged("the pool recycled meanwhile")
    added_to_pool = False
    if question is None:
        question = Question.objects.get(pk=state.wording) if state.wording else None
        if question is None:
            question = Question.objects.create(
                topic=topic,
                **proposal.question_fields(),
            )
            added_to_pool = question.is_active and question.follows_id is None
        elif ServedQuestion.objects.filter(question=question, user=user).exists():
            raise AlreadyServed("already served to this candidate in this topic")
    cycle = pool.cycle + 1 if proposal.pool_reset else pool.cycle
    progress = state.progress_after(cycle=cycle, added_to_pool=added_to_pool)
    served = ServedQuestion.objects.create(
        session=session,
        user=user,
        topic=topic,
        question=question,
        position=state.served + 1,
        cycle=cycle,
        pool_reset_size=progress.size if proposal.pool_reset else None,
        hold=hold,
        debit=debit,
    )
    served.label = str(state.asked + 1)  # a first-level question: the next number
    return _Captured(served=served, progress=progress)
