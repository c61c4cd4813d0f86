"""A coding answer's score, computed by Mockroom from what the tests said.

The hidden tests decide correctness: TEST_POINTS of the 10 in proportion to the tests passed
(all of them only when every test passes). The other points are for the complexity and the
quality of the solution: from the model's review of the code and the test report when a model
is configured, else from the bank's rubric applied to the candidate's "approach and complexity"
note. The model never decides whether the code works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from interviews.execution import CaseGrade, GradedReport

TEST_POINTS: Final[int] = 6
COMPLEXITY_POINTS: Final[int] = 2
QUALITY_POINTS: Final[int] = 2
REVIEW_POINTS: Final[int] = COMPLEXITY_POINTS + QUALITY_POINTS


def points_from_tests(graded: GradedReport) -> int:
    """TEST_POINTS in proportion to the tests passed, all of them only if every test passed."""
    if not graded.total:
        return 0
    if graded.all_passed:
        return TEST_POINTS
    return min(TEST_POINTS - 1, int(TEST_POINTS * graded.passed / graded.total))


@dataclass(frozen=True)
class Review:
    """The complexity and quality part of the score, with what to say about it."""

    complexity: int  # 0..COMPLEXITY_POINTS
    quality: int  # 0..QUALITY_POINTS
    strengths: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    source: str = "rubric"  # an Answer.FeedbackSource

    def __post_init__(self) -> None:
        if not (0 <= self.complexity <= COMPLEXITY_POINTS and 0 <= self.quality <= QUALITY_POINTS):
            raise ValueError("review points out of range")


def case_row(case: CaseGrade, *, show_input: bool, problem: dict[str, Any]) -> dict[str, Any]:
    """One test as the page shows it; a secret test's input and values never leave here."""
    row: dict[str, Any] = {
        "name": case.name,
        "why": case.why,
        "status": str(case.status),
        "passed": case.passed,
        "secret": case.secret,
        "expected": case.expected_text,
        "got": case.got_text,
        "error": case.error,
        "line": case.line,
        "stdout": case.stdout,
        "ms": round(case.ms, 1) if case.ms is not None else None,
    }
    if show_input and not case.secret:
        cases = [*problem.get("examples", []), *problem.get("tests", [])]
        source: dict[str, Any] = next((c for c in cases if c.get("name") == case.name), {})
        row["input"] = _input_text(source)
    return row


def _input_text(case: dict[str, Any]) -> str:
    from interviews.execution.compare import display

    if "setup" in case:
        return str(case["setup"])[:400]
    return ", ".join(display(arg) for arg in case.get("args", []))[:400]


def code_report(graded: GradedReport, *, problem: dict[str, Any], hidden: bool) -> dict[str, Any]:
    """What a run or a submission said, as stored on the answer and shown on the page."""
    first = graded.first_failure
    return {
        "executed": True,
        "hidden": hidden,
        "verdict": str(graded.verdict),
        "message": graded.message,
        "summary": (
            f"{graded.passed} of {graded.total} {'hidden tests' if hidden else 'examples'} passed"
        ),
        "passed": graded.passed,
        "total": graded.total,
        "all_passed": graded.all_passed,
        "first_failure": (
            case_row(first, show_input=True, problem=problem) if first is not None else None
        ),
        # A submission lists its tests by name and result only; a run shows the examples whole.
        "cases": [case_row(c, show_input=not hidden, problem=problem) for c in graded.cases],
    }


def not_run_report(reason: str) -> dict[str, Any]:
    """Where the sandbox is off: the code was not run, and the page says so."""
    return {"executed": False, "message": reason}


def score(graded: GradedReport, review: Review) -> int:
    return points_from_tests(graded) + review.complexity + review.quality
