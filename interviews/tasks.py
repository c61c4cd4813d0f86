"""Background work of interviews, run by the task worker (`make worker`)."""

import uuid

from django.tasks import task

from interviews import services


@task(queue_name="prefetch")
def question_prepare(session_id: str) -> str:
    """Prepare the next question of a session (PREFETCH): enqueued when one is delivered."""
    return services.question_prepare(session_id=uuid.UUID(session_id))


@task
def prepared_questions_discard() -> int:
    """Discard the prepared questions older than PREFETCH_MAX_AGE_SECONDS (every minute)."""
    return services.prepared_discard()


@task(queue_name="speech")
def recording_transcribe(recording_id: int) -> str:
    """Transcribe a spoken answer's recording (free; its audio is deleted afterwards)."""
    return services.recording_transcribe(recording_id=recording_id)
