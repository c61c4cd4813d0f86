"""Feedback on an answer: from the LLM when configured, else from the question's key points."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from django.conf import settings

from interviews.models import Answer, Question

logger = logging.getLogger(__name__)

STOPWORDS = frozenset(
    """a an and are as at be been but by can do does for from has have how if in into is it its
    not of on or so such than that the their them then there these they this to use used uses
    using was were what when where which while who why will with without you your
    should would could also more most other each both only same very just about over""".split()
)
SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "es", "ed", "ly", "s", "e")


def _stem(word: str) -> str:
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def terms(text: str) -> set[str]:
    """The significant words of a text, crudely stemmed: "caching" and "cache" meet."""
    words = re.findall(r"[a-z0-9_#+]+", text.casefold())
    return {_stem(w) for w in words if w not in STOPWORDS and len(w) > 2}


@dataclass(frozen=True)
class Feedback:
    source: str
    score: int | None = None
    covered: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    strengths: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    outline: str = ""


def rubric_feedback_get(*, question: Question, answer: str) -> Feedback:
    """Score an answer by the key points it covers: a point counts when at least half of its
    significant words (and at least two, for longer points) appear in the answer."""
    answer_terms = terms(answer)
    covered: list[str] = []
    missed: list[str] = []
    for point in question.key_points:
        wanted = terms(point)
        hits = len(wanted & answer_terms)
        needed = max(1, min(2, len(wanted)), round(len(wanted) * 0.5))
        (covered if wanted and hits >= needed else missed).append(point)
    total = len(question.key_points) or 1
    score = round(10 * len(covered) / total)
    if len(answer.split()) < 12:
        score = min(score, 3)  # a one-liner cannot be a strong interview answer
    strengths = [f"You covered: {point}" for point in covered]
    gaps = [f"Missing: {point}" for point in missed]
    return Feedback(
        source=Answer.FeedbackSource.RUBRIC,
        score=score,
        covered=covered,
        missed=missed,
        strengths=strengths,
        gaps=gaps,
        outline=question.outline,
    )


def feedback_calls_model() -> bool:
    """Whether feedback is asked of the model (counted by the in-flight limit)."""
    return bool(settings.QUESTION_SOURCE == "openai")


async def afeedback_get(*, question: Question, answer: str) -> Feedback:
    """LLM feedback when QUESTION_SOURCE is openai; on failure the rubric for bank questions,
    and "unavailable" (try again, free) for generated ones. The call is counted against the
    daily budget first (a spent budget is a failure like any other)."""
    if not feedback_calls_model():
        return rubric_feedback_get(question=question, answer=answer)
    from interviews import llm
    from interviews.spend import BudgetSpent, amodel_call_take

    try:
        await amodel_call_take()
        generated = await llm.agenerate_feedback(
            question=question.text,
            key_points=list(question.key_points),
            outline=question.outline,
            answer=answer,
        )
    except (llm.LLMError, BudgetSpent) as exc:
        logger.warning("feedback failed for question %s: %s", question.pk, exc)
        if question.source == Question.Source.BANK:
            return rubric_feedback_get(question=question, answer=answer)
        return Feedback(source=Answer.FeedbackSource.UNAVAILABLE)
    rubric = rubric_feedback_get(question=question, answer=answer)
    return Feedback(
        source=Answer.FeedbackSource.OPENAI,
        score=generated.score,
        covered=rubric.covered,
        missed=rubric.missed,
        strengths=list(generated.strengths),
        gaps=list(generated.gaps),
        outline=generated.outline or question.outline,
    )
