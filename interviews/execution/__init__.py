"""Running candidates' code in a sandbox, and grading what it returned.

    from interviews.execution import Limits, aexecutor_get, grade

    executor = await aexecutor_get()          # the configured engine, probed once per process
    report = await executor.arun(language="python", code=code, entry_point="busiest_hour",
                                 schema="", cases=problem["tests"], limits=Limits.for_problem(
                                     time_limit_ms=2000, memory_limit_mb=128))
    graded = grade(report, cases=problem["tests"], comparator=problem["comparator"])
    graded.message    # "Runtime error on test 'empty input': ZeroDivisionError: ... (line 4)"
    graded.summary    # "7 of 9 passed"

The engines are in `base` (the interface, `DisabledExecutor`) and `bubblewrap`; the comparators
in `compare`; what runs inside the sandbox in `harness/`.
"""

from interviews.execution.base import (
    LANGUAGES,
    CaseResult,
    DisabledExecutor,
    Executor,
    Limits,
    RunReport,
    Verdict,
    aexecutor_get,
    executor_get,
    executor_reset,
)
from interviews.execution.compare import (
    COMPARATORS,
    CaseGrade,
    CaseStatus,
    GradedReport,
    compare,
    grade,
)

__all__ = [
    "COMPARATORS",
    "LANGUAGES",
    "CaseGrade",
    "CaseResult",
    "CaseStatus",
    "DisabledExecutor",
    "Executor",
    "GradedReport",
    "Limits",
    "RunReport",
    "Verdict",
    "aexecutor_get",
    "compare",
    "executor_get",
    "executor_reset",
    "grade",
]
