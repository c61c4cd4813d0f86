"""What a coding problem is: one contract for the bank and for the model.

A coding problem is a question of kind "code". Its wording, key points, outline and difficulty
are a `CodeQuestionSpec` (a `QuestionSpec` whose statement may be longer); everything else it
needs to be run and graded is its `problem` (stored on the Question as JSON, in one language):

    title, language, entry_point, signature, starter, reference, schema (SQL),
    examples [{name, args | setup, expected}], tests [{name, why, args | setup, expected,
    secret}], comparator, time_limit_ms, memory_limit_mb, complexity, hints (three tiers)

`GeneratedProblemSpec` is what the model is asked for (strict structured output): the same, with
each case's input and expected value as JSON text (a strict schema cannot say "any JSON value").
`problem_from_generated` turns it into a problem, or raises OffSchema; whether its reference
passes its own tests is checked in the sandbox by the LLM source, before anything is charged.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, Field, StrictBool, StrictInt

from interviews.exceptions import OffSchema
from interviews.models import Language
from interviews.spec import (
    KEY_POINTS_MAX,
    KEY_POINTS_MIN,
    DifficultyChoice,
    Outline,
    Point,
    QuestionSpec,
    _refuse_control_characters,
    _Spec,
    _text,
)

PROBLEM_TEXT_MAX_CHARS: Final[int] = 3000
CODE_MAX_CHARS: Final[int] = 20_000  # a starter or a reference solution
TESTS_MIN: Final[int] = 8
TESTS_MAX: Final[int] = 30
EXAMPLES_MIN: Final[int] = 1
EXAMPLES_MAX: Final[int] = 4
HINT_TIERS: Final[int] = 3
TIME_LIMIT_MS: Final[tuple[int, int]] = (500, 10_000)
MEMORY_LIMIT_MB: Final[tuple[int, int]] = (32, 256)
COMPARATORS: Final[tuple[str, ...]] = ("exact", "unordered", "float", "rows", "rows_unordered")

ProblemText = Annotated[
    str, _text(PROBLEM_TEXT_MAX_CHARS), BeforeValidator(_refuse_control_characters)
]
Code = Annotated[str, _text(CODE_MAX_CHARS), BeforeValidator(_refuse_control_characters)]
Short = Annotated[str, _text(200), BeforeValidator(_refuse_control_characters)]


class CodeQuestionSpec(QuestionSpec):
    """A coding problem's wording: its statement may run to a few paragraphs."""

    text: ProblemText = Field(
        description="The problem statement: input, output, constraints, in plain text."
    )


class GeneratedCase(_Spec):
    name: Short = Field(description="A short unique name for this case.")
    why: Point = Field(description="What this case guards: an edge case, a size, a trap.")
    input_json: Code = Field(
        description=(
            "Python/JavaScript: a JSON array of the function's arguments. SQL: the INSERT "
            "statements that fill the tables for this case."
        )
    )
    expected_json: Code = Field(
        description="The expected result as JSON (SQL: an array of rows, each an array)."
    )
    secret: StrictBool = Field(description="True to hide its input from the candidate.")


class GeneratedProblemSpec(_Spec):
    """A coding problem as the model must deliver it."""

    # Not "title": the strict-schema conversion drops every key named so.
    problem_title: Short = Field(description="A short title for the problem.")
    text: ProblemText = Field(description="The statement: input, output and constraints.")
    entry_point: Annotated[str, _text(60)] = Field(
        description="The function the tests call (SQL: write 'query')."
    )
    signature: Short = Field(description="The function's signature in the language.")
    starter: Code = Field(description="Starter code: the signature and an empty body.")
    reference: Code = Field(description="A correct solution with the expected complexity.")
    schema_sql: Annotated[str, _text(CODE_MAX_CHARS)] | None = Field(
        description="SQL only: the CREATE TABLE statements; null for other languages."
    )
    examples: tuple[GeneratedCase, ...] = Field(min_length=EXAMPLES_MIN, max_length=EXAMPLES_MAX)
    tests: tuple[GeneratedCase, ...] = Field(min_length=TESTS_MIN, max_length=TESTS_MAX)
    comparator: Short = Field(
        description="exact, unordered, float, rows (SQL, ordered) or rows_unordered."
    )
    time_limit_ms: StrictInt = Field(ge=TIME_LIMIT_MS[0], le=TIME_LIMIT_MS[1])
    complexity: Short = Field(description="The expected time and space complexity.")
    hints: tuple[Point, ...] = Field(min_length=HINT_TIERS, max_length=HINT_TIERS)
    key_points: tuple[Point, ...] = Field(min_length=KEY_POINTS_MIN, max_length=KEY_POINTS_MAX)
    outline: Outline
    difficulty: DifficultyChoice


class CodeReviewSpec(_Spec):
    """The model's review of a solution's complexity and quality (never of its correctness:
    the tests decide that)."""

    complexity: StrictInt = Field(
        ge=0, le=2, description="0 worse than needed, 1 acceptable, 2 the expected complexity."
    )
    quality: StrictInt = Field(
        ge=0, le=2, description="0 hard to follow, 1 fair, 2 clear names, structure, edge cases."
    )
    strengths: tuple[Point, ...] = Field(max_length=4, description="What is good; may be empty.")
    gaps: tuple[Point, ...] = Field(max_length=4, description="What to improve; may be empty.")


def _decoded(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise OffSchema(f"{where} is not JSON: {exc.msg}") from None


def problem_from_generated(
    generated: GeneratedProblemSpec, *, language: str
) -> tuple[CodeQuestionSpec, dict[str, Any]]:
    """The model's problem as the question's spec and its stored problem, or OffSchema."""
    if generated.comparator not in COMPARATORS:
        raise OffSchema(f"comparator: {generated.comparator!r} is not one of {COMPARATORS}")
    sql = language == Language.SQL
    if sql and not generated.schema_sql:
        raise OffSchema("schema_sql: a SQL problem needs its CREATE TABLE statements")

    def case(item: GeneratedCase, where: str, *, hidden: bool) -> dict[str, Any]:
        data: dict[str, Any] = {"name": item.name}
        if hidden:
            data |= {"why": item.why, "secret": item.secret}
        if sql:
            data["setup"] = item.input_json
        else:
            args = _decoded(item.input_json, f"{where}.input_json")
            if not isinstance(args, list):
                raise OffSchema(f"{where}.input_json is not a JSON array of arguments")
            data["args"] = args
        data["expected"] = _decoded(item.expected_json, f"{where}.expected_json")
        return data

    examples = [case(c, f"examples.{i}", hidden=False) for i, c in enumerate(generated.examples)]
    tests = [case(c, f"tests.{i}", hidden=True) for i, c in enumerate(generated.tests)]
    names = [c["name"] for c in [*examples, *tests]]
    if len(set(names)) != len(names):
        raise OffSchema("every case needs a name of its own")
    spec = CodeQuestionSpec.parse(
        {
            "text": generated.text,
            "key_points": generated.key_points,
            "outline": generated.outline,
            "difficulty": generated.difficulty,
        }
    )
    problem = {
        "title": generated.problem_title,
        "language": language,
        "entry_point": "" if sql else generated.entry_point,
        "signature": generated.signature,
        "starter": generated.starter,
        "reference": generated.reference,
        "schema": generated.schema_sql or "",
        "examples": examples,
        "tests": tests,
        "comparator": generated.comparator,
        "time_limit_ms": generated.time_limit_ms,
        "memory_limit_mb": 128,
        "complexity": generated.complexity,
        "hints": list(generated.hints),
    }
    return spec, problem


def problem_for_language(data: dict[str, Any], *, language: str) -> dict[str, Any]:
    """A bank problem (several languages possible) as stored for one language."""
    return {
        "title": data["title"],
        "language": language,
        "entry_point": "" if language == Language.SQL else data["entry_point"],
        "signature": data.get("signature", {}).get(language, ""),
        "starter": data["starter"][language],
        "reference": data["reference"][language],
        "schema": data.get("schema", ""),
        "examples": data["examples"],
        "tests": data["tests"],
        "comparator": data["comparator"],
        "time_limit_ms": data["time_limit_ms"],
        "memory_limit_mb": data["memory_limit_mb"],
        "complexity": data.get("complexity", ""),
        "hints": list(data.get("hints", [])),
    }


__all__ = [
    "CodeQuestionSpec",
    "GeneratedProblemSpec",
    "problem_for_language",
    "problem_from_generated",
]
