"""The built-in coding problems: JSON files in interviews/bank/code/, one per topic.

A coding problem is a question of kind "code" (README, "Coding questions"): its statement in
`text`, an entry point, starter code and a reference solution per language (`reference`, keyed
by language, so that anyone can check the bank with their own tools), a plausible wrong
solution kept beside it (`wrong`: the suite proves the tests catch it), visible `examples`,
named hidden `tests` (each with why it exists), a comparator, limits, the expected complexity,
three hint tiers, key points and an outline for the rubric.

A case's input is `args` (python, javascript: the entry point's arguments) or `setup` (sql: the
INSERTs run after the problem's `schema`). A worst-case size is written as a short expression,
`args_expr` / `expected_expr`, evaluated here with nothing but a few pure builtins: the bank
files are the project's own code, never a model's output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CODE_BANK_DIR = Path(__file__).resolve().parent / "bank" / "code"
LANGUAGES = ("python", "javascript", "sql")
COMPARATORS = ("exact", "unordered", "float", "rows", "rows_unordered")
# What a bank expression may call: building inputs, nothing else.
EXPRESSION_NAMES = {
    "range": range,
    "list": list,
    "len": len,
    "sum": sum,
    "min": min,
    "max": max,
    "str": str,
    "abs": abs,
}


class CodeBankError(ValueError):
    """A coding-problem file does not have the expected shape."""


@dataclass(frozen=True)
class CodeProblem:
    topic: str  # the topic's slug
    key: str
    data: dict[str, Any]  # the problem, its cases' expressions evaluated

    @property
    def languages(self) -> list[str]:
        return list(self.data["languages"])


def _evaluated(case: dict[str, Any], where: str) -> dict[str, Any]:
    case = dict(case)
    for field in ("args", "expected"):
        expression = case.pop(f"{field}_expr", None)
        if expression is None:
            continue
        try:
            # The project's own files only (see the module's doc); no builtins but the above.
            value = eval(expression, {"__builtins__": {}}, dict(EXPRESSION_NAMES))  # noqa: S307
        except Exception as exc:
            raise CodeBankError(f"{where}: {field}_expr does not evaluate: {exc}") from exc
        case[field] = value
    return case


def code_problem_check(problem: dict[str, Any], where: str) -> None:
    """The shape the app relies on; raise CodeBankError naming what is wrong."""
    for field in ("key", "title", "text", "difficulty", "languages", "examples", "tests"):
        if not problem.get(field):
            raise CodeBankError(f"{where}: missing '{field}'")
    if problem.get("kind") != "code":
        raise CodeBankError(f"{where}: kind must be 'code'")
    if problem["difficulty"] not in ("easy", "medium", "hard"):
        raise CodeBankError(f"{where}: difficulty {problem['difficulty']!r}")
    if problem.get("comparator") not in COMPARATORS:
        raise CodeBankError(f"{where}: comparator {problem.get('comparator')!r}")
    for language in problem["languages"]:
        if language not in LANGUAGES:
            raise CodeBankError(f"{where}: language {language!r}")
        for field in ("starter", "reference"):
            if not problem.get(field, {}).get(language):
                raise CodeBankError(f"{where}: no {field} in {language}")
        if language != "sql" and not problem.get("entry_point"):
            raise CodeBankError(f"{where}: no entry_point")
    if len(problem["tests"]) < 8:
        raise CodeBankError(f"{where}: {len(problem['tests'])} hidden tests, at least 8 needed")
    if len(problem.get("hints", [])) != 3:
        raise CodeBankError(f"{where}: three hint tiers needed")
    names = [case.get("name") for case in [*problem["examples"], *problem["tests"]]]
    if len(set(names)) != len(names) or not all(names):
        raise CodeBankError(f"{where}: every case needs a name of its own")
    if not all(case.get("why") for case in problem["tests"]):
        raise CodeBankError(f"{where}: every hidden test says why it exists")


def code_problem_list(*, directory: Path = CODE_BANK_DIR) -> list[CodeProblem]:
    """Every coding problem of the bank, checked, its expressions evaluated."""
    problems: list[CodeProblem] = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CodeBankError(f"{path.name}: {exc}") from exc
        for index, problem in enumerate(data.get("questions", []), start=1):
            where = f"{path.name} problem {index} ({problem.get('key', '?')})"
            code_problem_check(problem, where)
            problem = dict(problem)
            for field in ("examples", "tests"):
                problem[field] = [_evaluated(case, where) for case in problem[field]]
            problems.append(CodeProblem(topic=data["slug"], key=problem["key"], data=problem))
    return problems
