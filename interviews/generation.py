"""Where a question comes from: the built-in bank, or an LLM. No database transaction is open here.

A source proposes a `Proposal`; the question flow (interviews.services) validates it and, if it
is good, pays for it and stores it. A source that cannot propose raises GenerationFailed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from django.conf import settings

from interviews.exceptions import GenerationFailed
from interviews.models import Question

if TYPE_CHECKING:
    from interviews.models import InterviewSession
    from interviews.selectors import PoolState


@dataclass(frozen=True)
class Proposal:
    text: str
    key_points: list[str]
    outline: str
    difficulty: str
    source: str
    model: str = ""
    question: Question | None = None  # an existing pool question (the bank)
    pool_reset: bool = False  # serving it starts a new pass through the pool


# An unusable answer is asked for again; a refusal, a timeout or a server error is not (the
# client already retried transport faults within its time budget).
REGENERATE_REASONS = frozenset({"malformed", "off_schema", "empty"})


class QuestionSource(Protocol):
    name: str

    def propose(self, *, session: InterviewSession, pool: PoolState) -> Proposal: ...


class BankSource:
    """Picks a question the candidate has not seen in this pass, at the session's difficulty
    when one is left; when the whole pool is seen, the pool recycles."""

    name = "bank"

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.SystemRandom()

    def propose(self, *, session: InterviewSession, pool: PoolState) -> Proposal:
        active = list(
            Question.objects.filter(topic=session.topic, is_active=True).only(
                "pk", "difficulty", "text", "key_points", "outline", "source", "model"
            )
        )
        if not active:
            raise GenerationFailed("empty_pool", f"The {session.topic} pool has no questions.")
        unseen = [q for q in active if q.pk not in pool.seen_in_cycle]
        pool_reset = not unseen
        if pool_reset:
            # A new pass: anything but the question just served.
            last = pool.recent_texts[0] if pool.recent_texts else None
            unseen = [q for q in active if q.text != last] or active
        preferred = [q for q in unseen if q.difficulty == session.difficulty] or unseen
        question = self.rng.choice(preferred)
        return Proposal(
            text=question.text,
            key_points=list(question.key_points),
            outline=question.outline,
            difficulty=question.difficulty,
            source=question.source,
            model=question.model,
            question=question,
            pool_reset=pool_reset,
        )


class LLMSource:
    """Asks the configured OpenAI-compatible model for a new question."""

    name = "openai"

    def propose(self, *, session: InterviewSession, pool: PoolState) -> Proposal:
        from interviews import llm

        try:
            generated = llm.generate_question(
                topic=session.topic.name,
                difficulty=session.difficulty,
                avoid=list(pool.recent_texts),
            )
        except llm.LLMError as exc:
            raise GenerationFailed(
                exc.reason, exc.detail, regenerate=exc.reason in REGENERATE_REASONS
            ) from exc
        return Proposal(
            text=generated.text,
            key_points=list(generated.key_points),
            outline=generated.outline,
            difficulty=generated.difficulty,
            source=Question.Source.OPENAI,
            model=generated.model,
        )


def question_source() -> QuestionSource:
    """The source QUESTION_SOURCE names: `openai` or `bank`."""
    return LLMSource() if settings.QUESTION_SOURCE == "openai" else BankSource()
