"""Answers in practice: stored with their feedback, free (the question was paid for)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync, sync_to_async
from django.db import transaction
from django.db.models import F

from config.metrics import FEEDBACK
from interviews.exceptions import (
    FeedbackLimitReached,
    FeedbackUnavailable,
)
from interviews.feedback import (
    Feedback,
    afeedback_get,
    feedback_calls_model,
)
from interviews.models import (
    Answer,
    ServedQuestion,
)

if TYPE_CHECKING:
    pass
from interviews.services.base import db_step, model_call_slot

# Feedback is free, but each request can be an LLM call: a question gets this many at most.
MAX_FEEDBACK_REQUESTS = 10


@db_step
def feedback_request_take(*, served: ServedQuestion) -> Answer | None:
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


async def aanswer_submit(*, served: ServedQuestion, text: str, recording_id: str = "") -> Answer:
    """Store the answer with its feedback. Free: the question was paid for.

    When the feedback is unavailable and an earlier answer has feedback, nothing is replaced:
    FeedbackUnavailable is raised and the earlier answer stays. Limited when the candidate has
    LLM_MAX_IN_FLIGHT_PER_USER model calls running already.
    """
    # The candidate's in-flight slot first: a refused request does not use up a feedback request.
    async with model_call_slot(user_id=served.user_id, calls_model=feedback_calls_model()):
        earlier = await sync_to_async(feedback_request_take)(served=served)
        # May call the LLM: no transaction open, no connection held.
        feedback = await afeedback_get(question=served.question, answer=text)
    return await sync_to_async(_answer_store)(
        served=served, earlier=earlier, text=text, feedback=feedback, recording_id=recording_id
    )


answer_submit = async_to_sync(aanswer_submit)


@db_step
def _answer_store(
    *,
    served: ServedQuestion,
    earlier: Answer | None,
    text: str,
    feedback: Feedback,
    recording_id: str = "",
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
                **spoken_fields(served=served, recording_id=recording_id, text=text),
            },
        )
    FEEDBACK.labels(feedback.source).inc()
    return answer


def spoken_fields(*, served: ServedQuestion, recording_id: str, text: str) -> dict[str, Any]:
    """A spoken answer's recording and how much of its draft was corrected; {} for a typed
    one (an earlier recording stays linked when the answer is improved by typing)."""
    from interviews.services.speech import recording_for_answer, transcript_changed

    recording = recording_for_answer(served=served, recording_id=recording_id)
    if recording is None:
        return {}
    return {
        "recording": recording,
        "transcript_changed": transcript_changed(raw=recording.transcript, submitted=text),
    }
