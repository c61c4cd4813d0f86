"""Mock interviews: questions one at a time up to the interview's length, answers stored as they
stand without feedback, and at the end every answer's feedback and the report, written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync, sync_to_async
from django.db import transaction
from django.utils import timezone

from config.metrics import FEEDBACK
from interviews.exceptions import (
    AnswerRefused,
    MockQuestionRefused,
)
from interviews.feedback import (
    Feedback,
    afeedback_get,
    feedback_calls_model,
    rubric_feedback_get,
)
from interviews.models import (
    MOCK_GRACE_SECONDS,
    Answer,
    InterviewSession,
    ServedQuestion,
)
from interviews.report import areport_overall
from interviews.selectors import (
    mock_question_open,
    session_report_get,
)

if TYPE_CHECKING:
    pass
from interviews.services.answers import spoken_fields
from interviews.services.base import db_step, model_call_slot
from interviews.services.coding import acode_grade
from interviews.services.prepared import prepared_discard


def mock_question_check(*, session: InterviewSession) -> None:
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


@db_step
def mock_answer_submit(*, served: ServedQuestion, text: str, recording_id: str = "") -> MockAnswer:
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
                **spoken_fields(served=served, recording_id=recording_id, text=text),
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


@db_step
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


@db_step
def _report_answer_store(
    *, answer: Answer, feedback: Feedback, report: dict[str, Any] | None = None
) -> None:
    with transaction.atomic(durable=True):
        stored = Answer.objects.filter(
            pk=answer.pk, feedback_source=Answer.FeedbackSource.PENDING
        ).update(
            code_report=report,
            score=feedback.score,
            covered=feedback.covered,
            missed=feedback.missed,
            strengths=feedback.strengths,
            gaps=feedback.gaps,
            outline=feedback.outline,
            feedback_source=feedback.source,
        )
    if stored:
        FEEDBACK.labels(feedback.source).inc()


@db_step
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
        tests = None
        if answer.served.question.is_code and answer.text.strip():
            # A coding answer: its hidden tests run now, and they decide its score.
            graded = await acode_grade(served=answer.served, code=answer.text, note=answer.note)
            feedback, tests = graded.feedback, graded.report
        else:
            feedback = await _mock_feedback(answer=answer, user_id=session.user_id)
        await sync_to_async(_report_answer_store)(answer=answer, feedback=feedback, report=tests)
    report = await sync_to_async(db_step(session_report_get))(session=session)
    overall = await areport_overall(report=report, user_id=session.user_id)
    await sync_to_async(_report_store)(session=session, report=overall)


report_build = async_to_sync(areport_build)
