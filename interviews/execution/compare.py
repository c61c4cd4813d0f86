"""Grading, in the app (the expected values never enter the sandbox): the comparators, and a run's
report turned into what the candidate reads — per test passed or failed with expected vs got,
"N of M passed", the first failing test and a plain-language verdict.

Comparators (a problem's `comparator`):

- `exact`: canonical JSON equality. Canonical means tuples are lists and a float with an integral
  value is that integer (2.0 == 2, as JSON and JavaScript see it); true is never 1.
- `unordered`: both arrays, equal as multisets (each item compared as canonical JSON).
- `float`: like exact, but numbers match within 1e-6, absolute or relative.
- `rows`: SQL rows, in order; numbers within 1e-6 (SQLite's AVG and a hand-written average
  may differ in the last bits).
- `rows_unordered`: SQL rows as a multiset.

Secret tests keep their input, expected value, printed output and error details to themselves:
their name (and `why`) shows when one is the first failure, and an error shows its type only.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from interviews.execution.base import JSON, RunReport, Verdict

TOLERANCE = 1e-6
DISPLAY_CHARS = 1000
SYNTAX_PREFIXES = ("SyntaxError", "IndentationError", "TabError")


def canonical(value: object) -> JSON:
    """`value` as canonical JSON data: tuples as lists, integral floats as ints."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
        return value
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): canonical(item) for key, item in value.items()}
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def canonical_text(value: object) -> str:
    return json.dumps(canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _close(expected: object, got: object) -> bool:
    """Equal, with numbers within TOLERANCE (through arrays and objects)."""
    if (
        isinstance(expected, (int, float))
        and isinstance(got, (int, float))
        and not isinstance(expected, bool)
        and not isinstance(got, bool)
    ):
        return math.isclose(expected, got, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(expected) == len(got) and all(map(_close, expected, got))
    if isinstance(expected, Mapping) and isinstance(got, Mapping):
        return expected.keys() == got.keys() and all(_close(expected[k], got[k]) for k in expected)
    return canonical_text(expected) == canonical_text(got)


def compare_exact(expected: object, got: object) -> bool:
    return canonical_text(expected) == canonical_text(got)


def compare_unordered(expected: object, got: object) -> bool:
    if not isinstance(expected, (list, tuple)) or not isinstance(got, (list, tuple)):
        return False
    return sorted(map(canonical_text, expected)) == sorted(map(canonical_text, got))


def compare_float(expected: object, got: object) -> bool:
    return _close(expected, got)


def _rows(value: object) -> list[list[object]] | None:
    if not isinstance(value, (list, tuple)):
        return None
    rows = [list(row) for row in value if isinstance(row, (list, tuple))]
    return rows if len(rows) == len(value) else None


def compare_rows(expected: object, got: object) -> bool:
    expected_rows, got_rows = _rows(expected), _rows(got)
    if expected_rows is None or got_rows is None:
        return False
    return _close(expected_rows, got_rows)


def _row_key(row: list[object]) -> str:
    # Floats rounded for sorting only, so that rows equal within the tolerance sort alike.
    return canonical_text([float(f"{c:.9g}") if isinstance(c, float) else c for c in row])


def compare_rows_unordered(expected: object, got: object) -> bool:
    expected_rows, got_rows = _rows(expected), _rows(got)
    if expected_rows is None or got_rows is None:
        return False
    return _close(sorted(expected_rows, key=_row_key), sorted(got_rows, key=_row_key))


COMPARATORS: dict[str, Callable[[object, object], bool]] = {
    "exact": compare_exact,
    "unordered": compare_unordered,
    "float": compare_float,
    "rows": compare_rows,
    "rows_unordered": compare_rows_unordered,
}


def compare(comparator: str, expected: object, got: object) -> bool:
    """Whether `got` is a right answer for `expected`; False for anything malformed."""
    try:
        function = COMPARATORS[comparator]
    except KeyError:
        raise ValueError(f"unknown comparator {comparator!r}") from None
    try:
        return function(expected, got)
    except (TypeError, ValueError, RecursionError):
        return False


class CaseStatus(enum.StrEnum):
    PASSED = "passed"
    WRONG = "wrong"  # returned, but not the expected value
    ERROR = "error"  # raised, or returned something that is not JSON
    NOT_RUN = "not_run"  # the run stopped before it (or the code did not load)


@dataclass(frozen=True, slots=True)
class CaseGrade:
    index: int
    name: str
    why: str
    secret: bool
    status: CaseStatus
    expected: JSON
    got: JSON = None
    error: str = ""  # for a secret test, the error's type only
    line: int | None = None
    stdout: str = ""  # "" for a secret test
    ms: float | None = None

    @property
    def passed(self) -> bool:
        return self.status is CaseStatus.PASSED

    @property
    def expected_text(self) -> str:
        """The expected value for display ("" when secret)."""
        return "" if self.secret else display(self.expected)

    @property
    def got_text(self) -> str:
        """What the code returned, for display ("" when secret or when nothing came back)."""
        return "" if self.secret or self.status is not CaseStatus.WRONG else display(self.got)


@dataclass(frozen=True, slots=True)
class GradedReport:
    verdict: Verdict
    cases: tuple[CaseGrade, ...]
    message: str  # the plain-language verdict
    error: str = ""  # the run's own error (syntax error, limit, sandbox), when it has one
    line: int | None = None

    @property
    def total(self) -> int:
        return len(self.cases)

    @property
    def passed(self) -> int:
        return sum(case.passed for case in self.cases)

    @property
    def summary(self) -> str:
        return f"{self.passed} of {self.total} passed"

    @property
    def all_passed(self) -> bool:
        return self.verdict is Verdict.COMPLETED and self.passed == self.total

    @property
    def first_failure(self) -> CaseGrade | None:
        return next((case for case in self.cases if not case.passed), None)


def display(value: object) -> str:
    """A value as the page shows it: JSON, cut at DISPLAY_CHARS."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= DISPLAY_CHARS else text[: DISPLAY_CHARS - 1] + "…"


def _error_type(error: str) -> str:
    return error.split(":", 1)[0]


def grade(
    report: RunReport, *, cases: Sequence[Mapping[str, Any]], comparator: str
) -> GradedReport:
    """`report` (a run of `cases`, in the same order) graded against the cases' `expected`."""
    if comparator not in COMPARATORS:
        raise ValueError(f"unknown comparator {comparator!r}")
    results = {result.case: result for result in report.cases}
    graded = []
    for index, case in enumerate(cases):
        secret = bool(case.get("secret", False))
        common: dict[str, Any] = {
            "index": index,
            "name": str(case.get("name", f"test {index + 1}")),
            "why": str(case.get("why", "")),
            "secret": secret,
            "expected": case.get("expected"),
        }
        result = results.get(index)
        if result is None:
            graded.append(CaseGrade(status=CaseStatus.NOT_RUN, **common))
            continue
        common.update(ms=result.ms, stdout="" if secret else result.stdout)
        if not result.ok:
            error = _error_type(result.error) if secret else result.error
            graded.append(
                CaseGrade(status=CaseStatus.ERROR, error=error, line=result.line, **common)
            )
        elif compare(comparator, case.get("expected"), result.value):
            graded.append(CaseGrade(status=CaseStatus.PASSED, got=result.value, **common))
        else:
            graded.append(CaseGrade(status=CaseStatus.WRONG, got=result.value, **common))
    return GradedReport(
        verdict=report.verdict,
        cases=tuple(graded),
        message=_message(report, graded),
        error=report.error,
        line=report.line,
    )


def _on(report: RunReport, cases: Sequence[CaseGrade]) -> str:
    """ " on test 'worst case size'" when the run was stopped in a known test."""
    index = report.stopped_case
    if index is None or not 0 <= index < len(cases):
        return ""
    return f" on test '{cases[index].name}'"


def _line(line: int | None) -> str:
    return f" (line {line})" if line else ""


def _message(report: RunReport, cases: Sequence[CaseGrade]) -> str:
    verdict = report.verdict
    if verdict is Verdict.DISABLED:
        return report.error or "Code is not run on this server."
    if verdict is Verdict.SANDBOX_FAILURE:
        return "Your code could not be run: the sandbox failed, not your code. Try again."
    if verdict is Verdict.SYNTAX_ERROR:
        error = report.error
        kind, _, detail = error.partition(": ")
        if kind in SYNTAX_PREFIXES or "syntax error" in error or "incomplete input" in error:
            detail = detail if kind in SYNTAX_PREFIXES else error
            where = f" on line {report.line}" if report.line else ""
            return f"Syntax error{where}: {detail}"
        return f"Your code did not load: {error}{_line(report.line)}"
    if verdict is Verdict.TIME_LIMIT:
        return f"Time limit exceeded{_on(report, cases)}"
    if verdict is Verdict.MEMORY_LIMIT:
        return f"Memory limit exceeded{_on(report, cases)}"
    if verdict is Verdict.OUTPUT_LIMIT:
        return f"Output limit exceeded{_on(report, cases)}: too much printed or returned"
    if verdict is Verdict.CRASHED:
        return f"Your program crashed{_on(report, cases)}: {report.error}"
    failure = next((case for case in cases if not case.passed), None)
    if failure is None:
        return f"All {len(cases)} tests passed" if len(cases) != 1 else "The test passed"
    name = failure.name
    if failure.status is CaseStatus.ERROR:
        return f"Runtime error on test '{name}': {failure.error}{_line(failure.line)}"
    if failure.status is CaseStatus.NOT_RUN:  # a COMPLETED run reports every case
        return f"Test '{name}' did not run"
    expected, got = failure.expected_text, failure.got_text
    if expected and got and len(expected) + len(got) <= 120:
        return f"Wrong answer on test '{name}': expected {expected}, got {got}"
    return f"Wrong answer on test '{name}'"
