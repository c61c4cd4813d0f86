"""A coding problem from the model counts as generated only once its reference solution passes
its own examples and hidden tests in the sandbox; otherwise it is thrown away and asked for
again, free, like any unusable question (Reason.REFERENCE_FAILS). Nothing is charged before."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interviews.coding.spec import problem_from_generated
from interviews.exceptions import GenerationFailed, Reason
from interviews.execution import Limits, aexecutor_get, grade
from interviews.generation import Proposal
from interviews.models import Question

if TYPE_CHECKING:
    from interviews.execution import GradedReport
    from interviews.models import InterviewSession
    from interviews.selectors import PoolState


async def areference_check(problem: dict[str, Any]) -> GradedReport:
    """The problem's reference run against all its cases in the sandbox, graded."""
    executor = await aexecutor_get()
    language = problem["language"]
    if not executor.available or language not in executor.languages:
        raise GenerationFailed(
            Reason.NO_SANDBOX,
            f"code is not run on this server ({executor.reason or language}): a generated "
            "coding problem cannot be checked",
        )
    cases = [*problem["examples"], *problem["tests"]]
    report = await executor.arun(
        language=language,
        code=problem["reference"],
        entry_point=problem["entry_point"],
        schema=problem["schema"],
        cases=cases,
        limits=Limits.for_problem(
            time_limit_ms=problem["time_limit_ms"], memory_limit_mb=problem["memory_limit_mb"]
        ),
    )
    return grade(report, cases=cases, comparator=problem["comparator"])


async def aproblem_generate(*, session: InterviewSession, pool: PoolState) -> Proposal:
    """One new coding problem for the session's coding pool (its topic and language)."""
    from interviews import llm

    topic = session.topic
    try:
        generated = await llm.agenerate_code_problem(
            topic=topic.name,
            language=topic.language,
            difficulty=session.difficulty,
            avoid=list(pool.recent_texts),
        )
    except llm.LLMError as exc:
        raise GenerationFailed(exc.reason, exc.detail) from exc
    spec, problem = problem_from_generated(generated, language=topic.language)  # or OffSchema
    checked = await areference_check(problem)
    if not checked.all_passed:
        raise GenerationFailed(
            Reason.REFERENCE_FAILS, f"its reference fails its own tests: {checked.message}"
        )
    return Proposal(
        spec=spec, source=Question.Source.OPENAI, model=generated.model, problem=problem
    )
