"""Coding answers: run the visible examples (free), and submit against the hidden tests (free:
the problem was paid for). Code never runs here: always in the sandbox (interviews.execution),
awaited without blocking the event loop. The tests decide correctness; the complexity and the
quality come from the model's review of the code and the test report, or without a model from
the bank's rubric applied to the candidate's "approach and complexity" note; Mockroom computes
the score (interviews.coding.grading). Where the sandbox is off, code is not run, the page says
so, and the answer gets the feedback any answer gets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction

from config.metrics import FEEDBACK
from interviews.coding.grading import (
    COMPLEXITY_POINTS,
    QUALITY_POINTS,
    REVIEW_POINTS,
    TEST_POINTS,
    Review,
    code_report,
    not_run_report,
    points_from_tests,
    score,
)
from interviews.execution import Executor, GradedReport, Limits, aexecutor_get, grade
from interviews.feedback import Feedback, afeedback_get, feedback_calls_model, rubric_feedback_get
from interviews.models import Answer, Question, ServedQuestion
from interviews.services.answers import feedback_request_take
from interviews.services.base import db_step, model_call_slot

logger = logging.getLogger(__name__)

NOT_RUN = (
    "Code is not run on this server (the sandbox is off here), so your code was read, not tested."
)


class CodeNotRun(Exception):
    """The sandbox is off on this server, or cannot run this language: 503, nothing run."""


@dataclass(frozen=True)
class CodeGrade:
    """A coding answer's feedback and what its tests said."""

    feedback: Feedback
    report: dict[str, Any]


async def _executor_for(problem: dict[str, Any]) -> Executor:
    executor = await aexecutor_get()
    if not executor.available:
        raise CodeNotRun(f"{NOT_RUN} ({executor.reason})")
    if problem["language"] not in executor.languages:
        raise CodeNotRun(f"{problem['language']} code is not run on this server.")
    return executor


async def _arun(problem: dict[str, Any], *, code: str, cases: list[dict[str, Any]]) -> GradedReport:
    executor = await _executor_for(problem)
    report = await executor.arun(
        language=problem["language"],
        code=code,
        entry_point=problem["entry_point"],
        schema=problem.get("schema", ""),
        cases=cases,
        limits=Limits.for_problem(
            time_limit_ms=problem["time_limit_ms"], memory_limit_mb=problem["memory_limit_mb"]
        ),
    )
    return grade(report, cases=cases, comparator=problem["comparator"])


async def acode_run(*, question: Question, code: str) -> dict[str, Any]:
    """The visible examples' results for `code` (free; rate-limited by the view); CodeNotRun
    where the sandbox is off."""
    problem = question.problem or {}
    graded = await _arun(problem, code=code, cases=list(problem["examples"]))
    return code_report(graded, problem=problem, hidden=False)


def _report_text(graded: GradedReport) -> str:
    """The tests' report as the model's review reads it: names and results, no hidden values."""
    lines = [f"{graded.summary}; verdict: {graded.message}"]
    lines += [f"- {case.name}: {case.status}" for case in graded.cases]
    return "\n".join(lines)


def _rubric_review(*, question: Question, note: str) -> Review:
    """Without a model: the bank's rubric on the candidate's approach and complexity note."""
    if not note.strip():
        return Review(
            complexity=0,
            quality=0,
            gaps=[
                f"Add a note on your approach and its complexity: it is worth {REVIEW_POINTS} "
                "of the 10 points."
            ],
        )
    rubric = rubric_feedback_get(question=question, answer=note)
    points = round(REVIEW_POINTS * (rubric.score or 0) / 10)
    complexity = min(COMPLEXITY_POINTS, points)
    return Review(
        complexity=complexity,
        quality=min(QUALITY_POINTS, points - complexity),
        strengths=[f"Your note covers: {point}" for point in rubric.covered[:2]],
        gaps=[f"Your note does not mention: {point}" for point in rubric.missed[:2]],
    )


async def _model_review(
    *, question: Question, code: str, note: str, graded: GradedReport, user_id: int
) -> Review | None:
    """The model's review of complexity and quality, or None when it is not to be had."""
    from interviews import llm
    from interviews.spend import BudgetSpent, amodel_call_take

    problem = question.problem or {}
    try:
        async with model_call_slot(user_id=user_id, calls_model=True):
            await amodel_call_take()
            review = await llm.agenerate_code_review(
                problem=question.text,
                complexity=str(problem.get("complexity", "")),
                report=_report_text(graded),
                code=code,
                note=note,
            )
    except (llm.LLMError, BudgetSpent) as exc:
        logger.warning("code review unavailable, the rubric scores it: %s", exc)
        return None
    return Review(
        complexity=review.complexity,
        quality=review.quality,
        strengths=list(review.strengths),
        gaps=list(review.gaps),
        source=Answer.FeedbackSource.OPENAI,
    )


async def acode_grade(*, served: ServedQuestion, code: str, note: str) -> CodeGrade:
    """Run the hidden tests and grade: the tests' points, and the review's. Where the sandbox
    is off, the code is read as any answer is (the feedback any answer gets)."""
    question = served.question
    problem = question.problem or {}
    try:
        graded = await _arun(problem, code=code, cases=list(problem["tests"]))
    except CodeNotRun as exc:
        feedback = await afeedback_get(question=question, answer=f"{code}\n\n{note}".strip())
        return CodeGrade(feedback=feedback, report=not_run_report(str(exc)))
    review = None
    if feedback_calls_model():
        review = await _model_review(
            question=question, code=code, note=note, graded=graded, user_id=served.user_id
        )
    review = review or _rubric_review(question=question, note=note)
    report = code_report(graded, problem=problem, hidden=True)
    tests_line = (
        f"Tests {points_from_tests(graded)} of {TEST_POINTS}: {report['summary']}. "
        f"{graded.message}."
    )
    strengths = [tests_line] if graded.all_passed else []
    gaps = [] if graded.all_passed else [tests_line]
    expected = problem.get("complexity", "")
    outline = question.outline + (f"\n\nExpected complexity: {expected}." if expected else "")
    feedback = Feedback(
        source=review.source,
        score=score(graded, review),
        covered=[],
        missed=[],
        strengths=[*strengths, *review.strengths],
        gaps=[*gaps, *review.gaps],
        outline=outline,
    )
    report["points"] = {
        "tests": points_from_tests(graded),
        "complexity": review.complexity,
        "quality": review.quality,
    }
    return CodeGrade(feedback=feedback, report=report)


@db_step
def _code_answer_store(
    *, served: ServedQuestion, code: str, note: str, graded: CodeGrade
) -> Answer:
    feedback = graded.feedback
    with transaction.atomic(durable=True):
        answer, _ = Answer.objects.update_or_create(
            served=served,
            defaults={
                "text": code,
                "note": note,
                "score": feedback.score,
                "covered": feedback.covered,
                "missed": feedback.missed,
                "strengths": feedback.strengths,
                "gaps": feedback.gaps,
                "outline": feedback.outline,
                "feedback_source": feedback.source,
                "code_report": graded.report,
            },
        )
    FEEDBACK.labels(feedback.source).inc()
    return answer


async def acode_answer_submit(*, served: ServedQuestion, code: str, note: str = "") -> Answer:
    """Submit code against the hidden tests and store the answer with its grade. Free; counted
    like feedback (at most MAX_FEEDBACK_REQUESTS a question, taken before anything runs)."""
    await sync_to_async(feedback_request_take)(served=served)
    graded = await acode_grade(served=served, code=code, note=note)
    return await sync_to_async(_code_answer_store)(
        served=served, code=code, note=note, graded=graded
    )
