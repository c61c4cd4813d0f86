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
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import timedelta
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
    AnswerRefused,
    FeedbackLimitReached,
    FeedbackUnavailable,
    FollowUpRefused,
    GenerationFailed,
    MockQuestionRefused,
    PoolChanged,
    Reason,
    SessionEnded,
)
from interviews.feedback import (
    Feedback,
    afeedback_get,
    feedback_calls_model,
    rubric_feedback_get,
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
    MOCK_GRACE_SECONDS,
    Answer,
    Difficulty,
    InterviewSession,
    PreparedQuestion,
    Question,
    ServedQuestion,
    Topic,
    question_fingerprint,
)
from interviews.report import areport_overall
from interviews.selectors import (
    PoolState,
    mock_question_open,
    pool_cycle_get,
    pool_state_get,
    session_report_get,
)
from interviews.spec import QuestionSpec
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
    *,
    user: User,
    topic: Topic,
    difficulty: str = Difficulty.MEDIUM,
    mode: str = InterviewSession.Mode.PRACTICE,
    length: int | None = None,
    minutes: int | None = None,
    focus: list[str] | None = None,
) -> InterviewSession:
    """A practice session, or a mock interview of `length` questions with `minutes` an answer
    (a database constraint refuses any other combination). Nothing is paid upfront. `focus`:
    key points its questions should exercise (the candidate's weak spots)."""
    if mode != InterviewSession.Mode.MOCK:
        length = minutes = None
    return InterviewSession.objects.create(
        user=user,
        topic=topic,
        difficulty=difficulty,
        mode=mode,
        length=length,
        minutes=minutes,
        focus=list(focus or []),
    )


@transaction.atomic(durable=True)
def session_end(*, session: InterviewSession) -> InterviewSession:
    if session.ended_at is None:
        session.ended_at = timezone.now()
        session.save(update_fields=["ended_at"])
    prepared_discard(session=session)
    return session


@dataclass(frozen=True)
class NextQuestion:
    served: ServedQuestion
    replay: bool  # the same request id again: the question it already bought, not charged again


@_db_step
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
        _mock_question_check(session=session)
    held = _hold_or_replay(session=session, request_id=request_id, purpose=f"question:{session.pk}")
    if isinstance(held, NextQuestion):
        return held
    pool = pool_state_get(user=session.user, topic=session.topic)
    # Should taking the prepared question fail, the hold expires on its own: nothing charged.
    prepared = _prepared_take(session=session, pool=pool) if settings.PREFETCH else None
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
            served = await _propose_and_capture(
                session=session, hold=hold, pool=pool, source=source, prepared=prepared
            )
    return NextQuestion(served=served, replay=False)


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


@_db_step
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


@_db_step
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
    *,
    session: InterviewSession,
    hold: Hold,
    pool: PoolState,
    source: QuestionSource,
    prepared: Proposal | None = None,
) -> ServedQuestion:
    async def propose() -> Proposal:
        nonlocal prepared
        if prepared is not None:  # the prepared question first; the source if it is refused
            proposal, prepared = prepared, None
            return proposal
        return await source.propose(session=session, pool=pool)

    async def capture(proposal: Proposal) -> ServedQuestion:
        return await sync_to_async(_capture)(
            session=session, hold=hold, proposal=proposal, pool=pool
        )

    async def pool_changed() -> None:
        nonlocal pool
        pool = await sync_to_async(_db_step(pool_state_get))(user=session.user, topic=session.topic)

    return await _proposed_until_captured(
        propose=propose, capture=capture, pool_changed=pool_changed, flow="question_next"
    )


async def _proposed_until_captured(
    *,
    propose: Callable[[], Awaitable[Proposal]],
    capture: Callable[[Proposal], Awaitable[ServedQuestion]],
    pool_changed: Callable[[], Awaitable[None]] | None = None,
    flow: str,
) -> ServedQuestion:
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
    if settings.PREFETCH:  # in the same step: the next question starts being prepared
        try:
            _prepare_later(session=session)
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
) -> ServedQuestion:
    """Inside the capture transaction, under the account lock: store what was bought.

    The database's unique constraints (a question once per pass, a position once per session, a
    wording once per topic) catch a concurrent request that got there first; raising rolls the
    whole capture back, and the flow proposes again.
    """
    user, topic = session.user, session.topic
    if session.is_mock:
        _mock_question_check(session=session)  # raising rolls the capture back: not charged
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
                **proposal.question_fields(),
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


# --- mock interviews -----------------------------------------------------------------------------


def _mock_question_check(*, session: InterviewSession) -> None:
    """A mock interview's questions come one at a time, up to its length: MockQuestionRefused
    (409, not charged) past its length or while the current question is still open."""
    asked = ServedQuestion.objects.filter(session=session, parent=None).count()
    if session.length is not None and asked >= session.length:
        raise MockQuestionRefused(
            f"This mock interview has had its {session.length} questions. End it to read your "
            "report. Nothing was charged."
        )
    latest = (
        ServedQuestion.objects.filter(session=session)
        .select_related("answer")
        .order_by("-position")
        .first()
    )
    if latest is not None and mock_question_open(served=latest, session=session):
        raise MockQuestionRefused(
            "Answer the current question first (or let its time run out). Nothing was charged."
        )


@dataclass(frozen=True)
class MockAnswer:
    answer: Answer
    finished: bool  # the interview's last question is answered: it ends, and its report is due


@_db_step
def mock_answer_submit(*, served: ServedQuestion, text: str) -> MockAnswer:
    """Store a mock interview's answer as it stands (even empty: the time ran out), with the
    seconds it took, and no feedback: that comes with the report. One answer a question, taken
    until its deadline plus MOCK_GRACE_SECONDS (the page submits it at 0, and the request takes
    a moment); after that AnswerRefused, and what was stored stays."""
    session = served.session
    if session.is_ended:
        raise AnswerRefused("This interview has ended: your answers are in its report.")
    allowed = session.answer_seconds
    elapsed = (timezone.now() - served.served_at).total_seconds()
    if elapsed > allowed + MOCK_GRACE_SECONDS:
        raise AnswerRefused(
            "The time for this question ran out; an answer can no longer be submitted."
        )
    timed_out = elapsed >= allowed
    with transaction.atomic(durable=True):
        answer, created = Answer.objects.get_or_create(
            served=served,
            defaults={
                "text": text,
                "feedback_source": Answer.FeedbackSource.PENDING,
                "seconds_used": min(allowed, max(0, round(elapsed))),
                "timed_out": timed_out,
            },
        )
    if not created:
        raise AnswerRefused("This question is answered already: in a mock interview, once.")
    questions = ServedQuestion.objects.filter(session=session)
    finished = (
        session.length is not None
        and questions.filter(parent=None).count() >= session.length
        and not questions.filter(answer__isnull=True).exists()
    )
    return MockAnswer(answer=answer, finished=finished)


@_db_step
def _report_start(*, session: InterviewSession) -> list[Answer] | None:
    """End the interview; None when its report is written already. Every question left without
    an answer (the page was closed while its time ran out) gets an empty one, scored 0 with the
    others. Returns the answers still waiting for their feedback, in order."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        InterviewSession.objects.filter(pk=session.pk, ended_at=None).update(ended_at=now)
        prepared_discard(session=session)
        if InterviewSession.objects.filter(pk=session.pk, report__isnull=False).exists():
            return None
        for served in ServedQuestion.objects.filter(session=session, answer__isnull=True):
            Answer.objects.get_or_create(
                served=served,
                defaults={
                    "text": "",
                    "feedback_source": Answer.FeedbackSource.PENDING,
                    "seconds_used": session.answer_seconds,
                    "timed_out": True,
                },
            )
    session.ended_at = session.ended_at or now
    return list(
        Answer.objects.filter(
            served__session=session, feedback_source=Answer.FeedbackSource.PENDING
        )
        .select_related("served__question")
        .order_by("served__position")
    )


NO_ANSWER = "No answer was given in the time."


async def _mock_feedback(*, answer: Answer, user_id: int) -> Feedback:
    """The answer's feedback as in practice (the model when configured, else the bank's rubric),
    with the rubric whenever the model fails: the report is always complete. No answer: 0."""
    question = answer.served.question
    if not answer.text.strip():
        rubric = rubric_feedback_get(question=question, answer="")
        return Feedback(
            source=rubric.source,
            score=0,
            covered=[],
            missed=rubric.missed,
            strengths=[],
            gaps=[NO_ANSWER, *rubric.gaps],
            outline=rubric.outline,
        )
    async with model_call_slot(user_id=user_id, calls_model=feedback_calls_model()):
        feedback = await afeedback_get(question=question, answer=answer.text)
    if feedback.source == Answer.FeedbackSource.UNAVAILABLE or feedback.score is None:
        return rubric_feedback_get(question=question, answer=answer.text)
    return feedback


@_db_step
def _report_answer_store(*, answer: Answer, feedback: Feedback) -> None:
    with transaction.atomic(durable=True):
        Answer.objects.filter(pk=answer.pk, feedback_source=Answer.FeedbackSource.PENDING).update(
            score=feedback.score,
            covered=feedback.covered,
            missed=feedback.missed,
            strengths=feedback.strengths,
            gaps=feedback.gaps,
            outline=feedback.outline,
            feedback_source=feedback.source,
        )


@_db_step
def _report_store(*, session: InterviewSession, report: dict[str, object]) -> None:
    # Written once: a second end request that raced this one keeps the first report.
    with transaction.atomic(durable=True):
        InterviewSession.objects.filter(pk=session.pk, report__isnull=True).update(report=report)


async def areport_build(*, session: InterviewSession) -> None:
    """End a mock interview and write its report, once: every answer's feedback, then the
    overall score (the mean of the answers' scores, as stored), strengths and gaps.

    It runs in the request that ends the interview (the last answer, or "End interview"), one
    model call at a time: the candidate is waiting for this report and nothing else, one call at
    a time keeps within LLM_MAX_IN_FLIGHT_PER_USER, and a coroutine waiting on the model holds
    no thread and no database connection. Each answer's feedback is stored as it comes, so a
    request that dies half-way leaves only the rest to do (the report page offers to finish).
    Free, like all feedback. Limited when another model call of the candidate is in flight.
    """
    pending = await sync_to_async(_report_start)(session=session)
    if pending is None:
        return
    for answer in pending:
        feedback = await _mock_feedback(answer=answer, user_id=session.user_id)
        await sync_to_async(_report_answer_store)(answer=answer, feedback=feedback)
    report = await sync_to_async(_db_step(session_report_get))(session=session)
    overall = await areport_overall(report=report, user_id=session.user_id)
    await sync_to_async(_report_store)(session=session, report=overall)


report_build = async_to_sync(areport_build)


# --- the next question, prepared in the background (PREFETCH) ---------------------------------


def _prepare_later(*, session: InterviewSession) -> None:
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
        return f"not prepared: {exc}"
    spec = proposal.spec
    repeated = Question.objects.filter(
        topic=session.topic, fingerprint=question_fingerprint(spec.text)
    )
    if proposal.question is None and repeated.exists():
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
    return "prepared"


def _prepared_take(*, session: InterviewSession, pool: PoolState) -> Proposal | None:
    """The session's prepared question as a proposal, taken (once: a conditional update), if it
    is fresh, at the session's difficulty and in the current pass; else it is discarded."""
    prepared = PreparedQuestion.objects.filter(
        session=session, status=PreparedQuestion.Status.READY
    ).first()
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
    return ready.update(status=PreparedQuestion.Status.DISCARDED, resolved_at=timezone.now())
