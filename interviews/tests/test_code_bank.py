"""The coding bank's gate: every problem's shape, and in the real sandbox every reference
solution passes its own examples and hidden tests while the wrong solution kept beside it, and
the starter code, each fail at least one hidden test."""

from collections import Counter

import pytest

from interviews.coding.bank import code_problem_list
from interviews.execution import Limits, grade

# The sandbox fixtures: skipped where the sandbox cannot run, a failure with CI=true.
from interviews.tests.test_execution import node_sandbox, sandbox  # noqa: F401

PROBLEMS = code_problem_list()


def test_the_bank_has_its_problems_per_topic_language_and_difficulty():
    counts = Counter(
        (problem.topic, language, problem.data["difficulty"])
        for problem in PROBLEMS
        for language in problem.languages
    )
    for topic, language in (("algorithms", "python"), ("javascript", "javascript"), ("sql", "sql")):
        per_level = {
            level: counts[(topic, language, level)] for level in ("easy", "medium", "hard")
        }
        wanted = 6 if topic == "algorithms" else 3
        assert per_level == dict.fromkeys(per_level, wanted), (topic, per_level)
    assert len({problem.key for problem in PROBLEMS}) == len(PROBLEMS) == 36
    assert all(len(problem.data["tests"]) >= 8 for problem in PROBLEMS)


def graded(engine, problem, language: str, code: str, cases: list):
    data = problem.data
    report = engine.run(
        language=language,
        code=code,
        entry_point=data.get("entry_point", ""),
        schema=data.get("schema", ""),
        cases=cases,
        limits=Limits.for_problem(
            time_limit_ms=data["time_limit_ms"], memory_limit_mb=data["memory_limit_mb"]
        ),
    )
    return grade(report, cases=cases, comparator=data["comparator"])


@pytest.mark.parametrize(
    ("problem", "language"),
    [(problem, language) for problem in PROBLEMS for language in problem.languages],
    ids=lambda value: value.key if hasattr(value, "key") else value,
)
def test_the_reference_passes_and_the_wrong_solution_and_the_starter_fail(
    request, problem, language
):
    engine = request.getfixturevalue("node_sandbox" if language == "javascript" else "sandbox")
    data = problem.data
    cases = [*data["examples"], *data["tests"]]
    reference = graded(engine, problem, language, data["reference"][language], cases)
    assert reference.all_passed, reference.message
    hidden = data["tests"]
    wrong = graded(engine, problem, language, data["wrong"][language], hidden)
    assert not wrong.all_passed, "the hidden tests do not catch the wrong solution"
    starter = graded(engine, problem, language, data["starter"][language], hidden)
    assert not starter.all_passed, "the starter code passes the hidden tests"
