"""Spoken answers: record, then transcribe, then correct, then submit.

    recording_start        the upload, decoded and normalised (16 kHz mono WAV), stored with
                           its request id; one in flight per candidate; the transcription task
                           queued on commit (the "speech" queue of the task workers)
    recording_transcribe   the task: the engine's draft (free to the candidate, counted in the
                           daily model budget when it is a model call), how the candidate spoke
                           (from the audio and the raw transcript), and the audio deleted
    answer link            the submitted answer keeps its recording and how much of the draft
                           the candidate corrected (interviews.services.answers)

Nothing here is charged: a failed transcription says so and leaves the typed text untouched.
"""

from __future__ import annotations

import difflib
import io
import logging
import wave
from array import array
from datetime import timedelta
from typing import TYPE_CHECKING

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from config.metrics import TRANSCRIPTIONS
from interviews.models import Recording, ServedQuestion

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)

TRANSCRIPTION_FAILED = (
    "We could not transcribe your recording: your typed text is untouched, and nothing was "
    "charged. Record again, or type your answer."
)
IN_FLIGHT = "Your last recording is still being transcribed: wait for it, then record again."


class RecordingRefused(Exception):
    """An upload refused before anything is stored: `status` and a message to show."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


def _stale_before() -> timedelta:
    """A pending recording older than this died with its worker: it no longer blocks."""
    return timedelta(seconds=2 * settings.TRANSCRIBE_TIMEOUT_SECONDS + 60)


@transaction.atomic(durable=True)
def recording_start(
    *,
    served: ServedQuestion,
    user: User,
    container: str,
    seconds: float,
    wav: bytes,
    request_id: str = "",
) -> Recording:
    """Store a normalised recording and queue its transcription, or RecordingRefused (429)
    while another recording of the candidate is being transcribed."""
    from interviews.tasks import recording_transcribe

    Recording.objects.filter(
        user=user,
        status=Recording.Status.PENDING,
        created_at__lt=timezone.now() - _stale_before(),
    ).update(
        status=Recording.Status.FAILED,
        error="The transcription did not finish.",
        audio=None,
        finished_at=timezone.now(),
    )
    try:
        with transaction.atomic():
            recording = Recording.objects.create(
                served=served,
                user=user,
                container=container,
                seconds=round(seconds, 2),
                audio=wav,
                request_id=request_id[:64],
            )
    except IntegrityError:
        raise RecordingRefused(429, IN_FLIGHT) from None
    transaction.on_commit(lambda: recording_transcribe.enqueue(recording_id=recording.pk))
    return recording


def _samples(wav: bytes) -> array[int]:
    with wave.open(io.BytesIO(wav)) as reader:
        frames = reader.readframes(reader.getnframes())
    samples = array("h")
    samples.frombytes(frames)
    return samples


def _finish(recording: Recording, **fields: object) -> None:
    """Store the outcome and delete the audio, unless the recording was resolved meanwhile."""
    Recording.objects.filter(pk=recording.pk, status=Recording.Status.PENDING).update(
        audio=None, finished_at=timezone.now(), **fields
    )


def recording_transcribe(*, recording_id: int) -> str:
    """The task: transcribe a pending recording and measure its delivery; the audio is deleted
    whatever happens. Returns what happened, for the task log (never the transcript)."""
    from interviews.speech.delivery import delivery_measure
    from interviews.speech.engines import TranscriptionFailed, engine_get, transcription_prompt
    from interviews.spend import BudgetSpent, model_call_take

    recording = (
        Recording.objects.select_related("served__question", "served__topic")
        .filter(pk=recording_id, status=Recording.Status.PENDING)
        .first()
    )
    if recording is None:
        return "no pending recording"
    wav = bytes(recording.audio or b"")
    question = recording.served.question
    engine = engine_get()
    try:
        if not engine.available:
            raise TranscriptionFailed("off", engine.reason)
        if engine.calls_model:
            model_call_take()  # the daily model budget counts transcriptions too
        transcript = async_to_sync(engine.atranscribe)(
            wav=wav,
            prompt=transcription_prompt(
                question_text=question.text, topic=recording.served.topic.name
            ),
        )
        text = transcript.text.strip()
        if not text:
            raise TranscriptionFailed("empty", "the engine heard no words")
    except (TranscriptionFailed, BudgetSpent) as exc:
        logger.warning("recording %s not transcribed: %s", recording.pk, exc)
        _finish(recording, status=Recording.Status.FAILED, error=TRANSCRIPTION_FAILED)
        TRANSCRIPTIONS.labels(engine.name or "custom", "failed").inc()
        return f"failed: {exc}"
    delivery = delivery_measure(samples=_samples(wav), sample_rate=16_000, transcript=text)
    _finish(
        recording,
        status=Recording.Status.DONE,
        transcript=text,
        engine=transcript.engine,
        model=transcript.model,
        delivery=delivery.as_dict(),
    )
    TRANSCRIPTIONS.labels(engine.name or "custom", "done").inc()
    return f"transcribed {recording.seconds:.0f} s with {transcript.engine}"


def recording_for_answer(*, served: ServedQuestion, recording_id: str) -> Recording | None:
    """The candidate's transcribed recording of this question named by the form, if any."""
    if not recording_id.isdigit():
        return None
    return Recording.objects.filter(
        pk=int(recording_id), served=served, status=Recording.Status.DONE
    ).first()


def transcript_changed(*, raw: str, submitted: str) -> float:
    """How much of the raw transcript the candidate changed: 0 (none) to 1 (all)."""
    if not raw:
        return 0.0
    return round(1 - difflib.SequenceMatcher(None, raw, submitted, autojunk=False).ratio(), 3)
