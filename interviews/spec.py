"""What a question is, and what feedback is: one typed contract for every source.

`QuestionSpec` holds every limit of a question (its text, 3 to 6 key points and their length,
the outline, a difficulty of the model's choices), normalises what it is given (whitespace
stripped, difficulty lower-cased) and refuses control characters. The LLM's reply is parsed
with it, the bank's files are validated with it, and it is the only check the question flow
makes on a question's shape: a `Proposal` carries a `QuestionSpec`, so a question that reaches
the purchase has passed it. `FeedbackSpec` is the same for the model's feedback on an answer.

`parse()` turns anything invalid into `OffSchema` (Reason.OFF_SCHEMA, asked for again at no
cost), naming the first thing wrong; `json_schema()` is the schema sent to the model, in the
form OpenAI's strict structured output requires.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
)

from interviews.exceptions import OffSchema
from interviews.models import Difficulty

# --- The limits: nothing else in the project defines them ---------------------------------------

QUESTION_MAX_CHARS: Final[int] = 1000
KEY_POINTS_MIN: Final[int] = 3
KEY_POINTS_MAX: Final[int] = 6
POINT_MAX_CHARS: Final[int] = 300  # one key point, strength or gap
OUTLINE_MAX_CHARS: Final[int] = 3000
FEEDBACK_ITEMS_MAX: Final[int] = 8  # strengths, and gaps
SCORE_MIN: Final[int] = 0
SCORE_MAX: Final[int] = 10

# Control characters other than tab, newline and carriage return (NUL above all: PostgreSQL
# refuses it in text) have no place in a question or in feedback. They are refused, not
# stripped: such a reply is off-schema, and asked for again at no cost.
_CONTROL_RE: Final[re.Pattern[str]] = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _refuse_control_characters(value: object) -> object:
    # Before stripping: str.strip() would silently drop \x1c-\x1f at either end.
    if isinstance(value, str) and _CONTROL_RE.search(value):
        raise ValueError("contains control characters")
    return value


def _normalise_difficulty(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _text(max_chars: int) -> StringConstraints:
    return StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=max_chars)


# The constraints first: a BeforeValidator wraps what precedes it, so it runs before them.
QuestionText = Annotated[
    str, _text(QUESTION_MAX_CHARS), BeforeValidator(_refuse_control_characters)
]
Point = Annotated[str, _text(POINT_MAX_CHARS), BeforeValidator(_refuse_control_characters)]
Outline = Annotated[str, _text(OUTLINE_MAX_CHARS), BeforeValidator(_refuse_control_characters)]
DifficultyChoice = Annotated[Difficulty, BeforeValidator(_normalise_difficulty)]

# Keywords OpenAI's strict structured output does not accept, or that only document the model
# for people: the limits they state are still enforced by parse().
_NOT_IN_STRICT_SCHEMAS: Final[frozenset[str]] = frozenset(
    {"title", "default", "minLength", "maxLength"}
)

JsonSchema = dict[str, object]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def parse(cls, data: object) -> Self:
        """`data` (a decoded JSON object, or a mapping of fields) as a valid spec, or OffSchema
        naming the first thing wrong."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise OffSchema(_first_problem(exc)) from None

    @classmethod
    def json_schema(cls) -> JsonSchema:
        """The JSON schema the model is asked to follow, fit for strict structured output:
        every property required, no other property allowed, no references."""
        schema = cls.model_json_schema()
        definitions = schema.pop("$defs", {})
        schema.pop("description", None)  # the class's docstring is for readers of this code
        strict = _strict(schema, definitions)
        assert isinstance(strict, dict)
        return strict


def _first_problem(error: ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "the reply"
    if first["type"] == "model_type":
        return f"{where} is not a JSON object"
    return f"{where}: {first['msg'].removeprefix('Value error, ')}"


def _strict(node: object, definitions: JsonSchema) -> object:
    """`node` with references inlined and keywords strict mode refuses left out; an object that
    would let the model leave out a property or add one is a bug in the spec, caught here."""
    if isinstance(node, list):
        return [_strict(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    reference = node.get("$ref")
    if isinstance(reference, str):
        target = definitions[reference.removeprefix("#/$defs/")]
        merged = {**(target if isinstance(target, dict) else {}), **node}
        del merged["$ref"]
        return _strict(merged, definitions)
    strict = {
        key: _strict(value, definitions)
        for key, value in node.items()
        if key not in _NOT_IN_STRICT_SCHEMAS
    }
    if strict.get("type") == "object":
        properties = strict.get("properties")
        names = sorted(properties) if isinstance(properties, dict) else []
        required = strict.get("required")
        if strict.get("additionalProperties") is not False or not (
            isinstance(required, list) and sorted(required) == names
        ):
            raise TypeError(f"not a strict object schema: {sorted(strict)}")
    return strict


class QuestionSpec(_Spec):
    """An interview question as any source must deliver it."""

    text: QuestionText = Field(
        description="The interview question, self-contained, in at most a few sentences."
    )
    key_points: tuple[Point, ...] = Field(
        min_length=KEY_POINTS_MIN,
        max_length=KEY_POINTS_MAX,
        description=f"The points a strong answer covers ({KEY_POINTS_MIN} to {KEY_POINTS_MAX}).",
    )
    outline: Outline = Field(description="A model answer outline in 2 to 4 sentences.")
    difficulty: DifficultyChoice


class FeedbackSpec(_Spec):
    """Feedback on one answer, as the model must deliver it."""

    score: StrictInt = Field(
        ge=SCORE_MIN,
        le=SCORE_MAX,
        description="0 (no relevant content) to 10 (complete, accurate, well reasoned).",
    )
    strengths: tuple[Point, ...] = Field(
        max_length=FEEDBACK_ITEMS_MAX,
        description="What the answer got right; empty if nothing.",
    )
    gaps: tuple[Point, ...] = Field(
        max_length=FEEDBACK_ITEMS_MAX,
        description="Key points missing from the answer, or stated wrongly.",
    )
    outline: Outline = Field(description="How a strong answer would go, in 2 to 4 sentences.")


class ReportSpec(_Spec):
    """The overall part of a mock interview's report, as the model must deliver it (the score is
    the mean of the answers' scores, never the model's)."""

    strengths: tuple[Point, ...] = Field(
        max_length=FEEDBACK_ITEMS_MAX,
        description="What the candidate did well across the interview; empty if nothing.",
    )
    gaps: tuple[Point, ...] = Field(
        max_length=FEEDBACK_ITEMS_MAX,
        description="What to work on, across the interview: recurring gaps first.",
    )
