"""Interview sessions: start one, end one. Nothing is paid upfront."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from interviews.models import (
    Difficulty,
    InterviewSession,
    Topic,
)

if TYPE_CHECKING:
    from accounts.models import User
from interviews.services.prepared import prepared_discard


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
