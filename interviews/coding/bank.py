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

from interviews.coding.spec import CodeQuestionSpec, problem_for_language
from interviews.exceptions import OffSchema
from interviews.models import Language, Question, Topic
from interviews.spec import QuestionSpec

CODE_BANK_DIR = Path(__file__).resolve().parent.parent / "bank" / "code"
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


def coding_pool_get_or_create(*, parent: Topic, language: str) -> Topic:
    """The topic holding `parent`'s coding problems in `language` (a pool of its own)."""
    label = Language(language).label
    pool, _ = Topic.objects.get_or_create(
        parent=parent,
        kind=Topic.Kind.CODE,
        language=language,
        defaults={
            "slug": f"{parent.slug}-{language}-coding"[:50],
            "name": f"{parent.name}: coding in {label}",
            "description": (
                f"Coding problems in {label}: write a solution, run the examples, and submit it "
                "against hidden tests."
            ),
            "order": parent.order,
        },
    )
    return pool


def code_bank_load(*, directory: Path = CODE_BANK_DIR) -> tuple[int, int]:
    """Create the coding problems the database does not have yet, each in its topic's coding
    pool for its language; (created, unchanged). Runs inside bank_load's transaction."""
    problems = code_problem_list(directory=directory)  # all checked before any is written
    specs = {}
    for problem in problems:
        data = problem.data
        try:
            specs[problem.key] = CodeQuestionSpec.parse(
                {
                    "text": data["text"],
                    "key_points": data["key_points"],
                    "outline": data["outline"],
                    "difficulty": data["difficulty"],
                }
            )
        except OffSchema as exc:
            raise CodeBankError(f"{problem.key}: {exc.detail}") from None
    existing = set(
        Question.objects.filter(bank_key__startswith="code-", follows=None).values_list(
            "bank_key", flat=True
        )
    )
    created = unchanged = 0
    parents = {topic.slug: topic for topic in Topic.objects.filter(kind=Topic.Kind.QUESTIONS)}
    for problem in problems:
        parent = parents.get(problem.topic)
        if parent is None:
            raise CodeBankError(f"{problem.key}: no topic '{problem.topic}' in the bank")
        for language in problem.languages:
            key = problem.key if len(problem.languages) == 1 else f"{problem.key}:{language}"
            if key in existing:
                unchanged += 1
                continue
            spec = specs[problem.key]
            question = Question.objects.create(
                topic=coding_pool_get_or_create(parent=parent, language=language),
                bank_key=key,
                kind=Question.Kind.CODE,
                difficulty=spec.difficulty,
                text=spec.text,
                key_points=list(spec.key_points),
                outline=spec.outline,
                source=Question.Source.BANK,
                problem=problem_for_language(problem.data, language=language),
            )
            for number, follow_up in enumerate(_follow_ups(problem.data), start=1):
                Question.objects.create(
                    topic=question.topic,
                    bank_key=f"{key}.f{number}",
                    follows=question,
                    probes=[0, len(spec.key_points) - 1],
                    difficulty=spec.difficulty,
                    text=follow_up.text,
                    key_points=list(follow_up.key_points),
                    outline=follow_up.outline,
                    source=Question.Source.BANK,
                )
            created += 1
    return created, unchanged


def _follow_ups(data: dict[str, Any]) -> list[QuestionSpec]:
    """What an interviewer asks after a solution: its complexity, then how it scales."""
    title, complexity = data["title"], data.get("complexity") or "not given"
    return [
        QuestionSpec.parse(
            {
                "text": (
                    f"About your solution to \u201c{title}\u201d: what are its time and space "
                    "complexity, which step dominates the cost, and could either be improved?"
                ),
                "key_points": [
                    f"States the time complexity and derives it (expected: {complexity})",
                    "States the extra space the solution uses, and why",
                    "Names the step that dominates and whether a better bound is possible",
                ],
                "outline": (
                    f"The expected solution runs in {complexity}. A strong answer derives the "
                    "bound from the solution's own steps, names the dominant one, and says "
                    "whether a better bound exists and what it would cost."
                ),
                "difficulty": data["difficulty"],
            }
        ),
        QuestionSpec.parse(
            {
                "text": (
                    f"About \u201c{title}\u201d: how would your solution change if the input "
                    "were far larger than memory, or arrived as a stream?"
                ),
                "key_points": [
                    "Identifies which state must be kept and which can be dropped",
                    "Proposes a streaming, chunked or external approach with its memory bound",
                    "Discusses the trade-offs: extra passes, approximation or external sorting",
                ],
                "outline": (
                    "Keep only the state the answer depends on, process the input in one pass "
                    "or in chunks, and say what that costs in passes, precision or disk."
                ),
                "difficulty": data["difficulty"],
            }
        ),
    ]
