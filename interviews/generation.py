"""Where a question comes from: the built-in bank, or an LLM. No database transaction is open here.

A source proposes a `Proposal`; the question flow (interviews.services) validates it and, if it
is good, pays for it and stores it. A source that cannot propose raises GenerationFailed.
`propose` is a coroutine: the LLM source waits on the model without holding a thread or a
database connection; the bank source reads the database in a short synchronous step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.db.models import Exists, OuterRef, QuerySet, Value

from interviews.exceptions import GenerationFailed
from interviews.models import Question, ServedQuestion

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

    async def propose(self, *, session: InterviewSession, pool: PoolState) -> Proposal: ...


class BankSource:
    """Picks a question the candidate has not seen in this pass, at the session's difficulty
    when one is left; when the whole pool is seen, the pool recycles.

    The pick is one indexed query whatever the size of the pool or of the history: the first
    unseen question at or after a random point of the pool's fixed random order (`draw`).
    """

    name = "bank"

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.SystemRandom()

    async def propose(self, *, session: InterviewSession, pool: PoolState) -> Proposal:
        return await sync_to_async(self.pick)(session=session, pool=pool)

    def pick(self, *, session: InterviewSession, pool: PoolState) -> Proposal:
        active = Question.objects.filter(topic_id=session.topic_id, is_active=True)
        seen = ServedQuestion.objects.filter(
            user_id=session.user_id,
            topic_id=session.topic_id,
            cycle=pool.cycle,
            question=OuterRef("pk"),
        )
        question = self._first_after_random_point(active.exclude(Exists(seen)), session.difficulty)
        pool_reset = question is None
        if pool_reset:
            # A new pass: anything but the question just served (unless it is the only one).
            question = self._first_after_random_point(
                active.exclude(pk=pool.last_question_id), session.difficulty
            ) or self._first_after_random_point(active, session.difficulty)
        if question is None:
            raise GenerationFailed("empty_pool", f"The {session.topic} pool has no questions.")
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

    def _first_after_random_point(
        self, candidates: QuerySet[Question], difficulty: str
    ) -> Question | None:
        """One query: the session's difficulty first, then any; after the point, then before."""
        point = self.rng.random()
        fields = ("pk", "difficulty", "text", "key_points", "outline", "source", "model", "draw")
        branches = [
            candidates.filter(difficulty=difficulty, draw__gte=point),
            candidates.filter(difficulty=difficulty, draw__lt=point),
            candidates.filter(draw__gte=point),
            candidates.filter(draw__lt=point),
        ]
        ranked = [
            branch.only(*fields).annotate(rank=Value(rank)).order_by("draw")[:1]
            for rank, branch in enumerate(branches)
        ]
        if connection.features.supports_slicing_ordering_in_compound:
            return next(iter(ranked[0].union(*ranked[1:], all=True).order_by("rank")[:1]), None)
        # SQLite cannot limit the parts of a UNION: the same branches, one query each.
        return next((question for branch in ranked for question in branch), None)


class LLMSource:
    """Asks the configured OpenAI-compatible model for a new question."""

    name = "openai"

    async def propose(self, *, session: InterviewSession, pool: PoolState) -> Proposal:
        from interviews import llm

        try:
            generated = await llm.agenerate_question(
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
