"""interviews.spec: the one contract of a question's (and feedback's) shape, whatever its source.

No database: the bank files are read from a temporary directory, the LLM is the fake server.
"""

import json
from pathlib import Path
from typing import Any

import pytest

from interviews import llm
from interviews.bank import BankFileError, bank_file_read
from interviews.exceptions import GenerationFailed, OffSchema, Reason
from interviews.models import Difficulty
from interviews.spec import (
    FEEDBACK_ITEMS_MAX,
    KEY_POINTS_MAX,
    KEY_POINTS_MIN,
    OUTLINE_MAX_CHARS,
    POINT_MAX_CHARS,
    QUESTION_MAX_CHARS,
    SCORE_MAX,
    SCORE_MIN,
    FeedbackSpec,
    QuestionSpec,
)
from interviews.tests.fake_openai import FakeOpenAI, feedback_payload, ok, question_payload
from interviews.tests.fake_openai import fake_openai as fake_openai_fixture  # noqa: F401


def points(count: int, length: int = 20) -> list[str]:
    return [f"{n}".ljust(length, "p") for n in range(count)]


def question(**overrides: Any) -> dict[str, Any]:
    return question_payload(key_points=points(KEY_POINTS_MIN)) | overrides


def refused(spec: type[QuestionSpec | FeedbackSpec], data: object) -> OffSchema:
    with pytest.raises(OffSchema) as caught:
        spec.parse(data)
    return caught.value


# --- The limits, at their edges ------------------------------------------------------------------


def test_the_limits_are_the_issue_s() -> None:
    assert (KEY_POINTS_MIN, KEY_POINTS_MAX) == (3, 6)
    assert (SCORE_MIN, SCORE_MAX) == (0, 10)


@pytest.mark.parametrize(
    ("overrides", "accepted"),
    [
        ({"text": "x" * QUESTION_MAX_CHARS}, True),
        ({"text": "  " + "x" * QUESTION_MAX_CHARS + "\n"}, True),  # measured once stripped
        ({"text": "x" * (QUESTION_MAX_CHARS + 1)}, False),
        ({"text": "?"}, True),
        ({"text": " \n\t "}, False),
        ({"key_points": points(KEY_POINTS_MIN)}, True),
        ({"key_points": points(KEY_POINTS_MAX)}, True),
        ({"key_points": points(KEY_POINTS_MIN - 1)}, False),
        ({"key_points": points(KEY_POINTS_MAX + 1)}, False),
        ({"key_points": [*points(2), "p" * POINT_MAX_CHARS]}, True),
        ({"key_points": [*points(2), "p" * (POINT_MAX_CHARS + 1)]}, False),
        ({"key_points": [*points(2), "  "]}, False),
        ({"outline": "o" * OUTLINE_MAX_CHARS}, True),
        ({"outline": "o" * (OUTLINE_MAX_CHARS + 1)}, False),
        ({"outline": ""}, False),
        ({"difficulty": "hard"}, True),
        ({"difficulty": "impossible"}, False),
    ],
)
def test_question_limits_at_the_edges(overrides: dict[str, Any], accepted: bool) -> None:
    data = question(**overrides)
    if accepted:
        QuestionSpec.parse(data)
    else:
        assert refused(QuestionSpec, data).reason == Reason.OFF_SCHEMA


def test_a_question_is_normalised() -> None:
    spec = QuestionSpec.parse(
        question(text="  What is JSX?\n", key_points=[" a ", "b\n", "\tc"], difficulty=" Hard ")
    )

    assert spec.text == "What is JSX?"
    assert spec.key_points == ("a", "b", "c")
    assert spec.difficulty is Difficulty.HARD


@pytest.mark.parametrize(
    "data",
    [
        question(extra="field"),
        {key: value for key, value in question().items() if key != "difficulty"},
        question(text=5),
        question(key_points="a, b, c"),
        question(key_points=[1, 2, 3]),
        ["not", "an", "object"],
        None,
    ],
    ids=["extra", "missing", "number", "string-points", "number-points", "list", "null"],
)
def test_anything_but_a_question_object_is_off_schema(data: object) -> None:
    error = refused(QuestionSpec, data)

    assert isinstance(error, GenerationFailed)
    assert error.reason == Reason.OFF_SCHEMA
    assert error.regenerate  # asked for again, free


def test_the_error_names_the_field() -> None:
    assert refused(QuestionSpec, question(key_points=points(7))).detail.startswith("key_points:")
    assert refused(QuestionSpec, ["x"]).detail == "the reply is not a JSON object"


# --- Control characters are refused, not stripped -------------------------------------------------


@pytest.mark.parametrize("character", ["\x00", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f"])
@pytest.mark.parametrize("field", ["text", "key_points", "outline"])
def test_control_characters_are_refused(character: str, field: str) -> None:
    # At the end too, where stripping would otherwise hide \x1c-\x1f (str.strip() removes them).
    value = f"A value{character}"
    data = question(**{field: [value, *points(2)] if field == "key_points" else value})

    assert "control characters" in refused(QuestionSpec, data).detail


def test_tabs_and_newlines_are_text() -> None:
    spec = QuestionSpec.parse(question(text="Line one\n\tline two\r\nline three?"))

    assert spec.text == "Line one\n\tline two\r\nline three?"


def test_control_characters_in_feedback_are_refused() -> None:
    refused(FeedbackSpec, feedback_payload(outline="Effects run \x00after render."))
    refused(FeedbackSpec, feedback_payload(gaps=["fine", "not\x07fine"]))


# --- Feedback ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "accepted"),
    [
        ({"score": SCORE_MIN}, True),
        ({"score": SCORE_MAX}, True),
        ({"score": SCORE_MIN - 1}, False),
        ({"score": SCORE_MAX + 1}, False),
        ({"score": 7.0}, False),  # not an integer in the schema's sense
        ({"score": True}, False),
        ({"score": "7"}, False),
        ({"strengths": [], "gaps": []}, True),
        ({"strengths": ["s"] * FEEDBACK_ITEMS_MAX}, True),
        ({"strengths": ["s"] * (FEEDBACK_ITEMS_MAX + 1)}, False),
        ({"gaps": ["g" * POINT_MAX_CHARS]}, True),
        ({"gaps": ["g" * (POINT_MAX_CHARS + 1)]}, False),
        ({"outline": "   "}, False),
    ],
)
def test_feedback_limits_at_the_edges(overrides: dict[str, Any], accepted: bool) -> None:
    data = feedback_payload() | overrides
    if accepted:
        FeedbackSpec.parse(data)
    else:
        refused(FeedbackSpec, data)


# --- The schema sent to the model is strict -------------------------------------------------------


def objects_in(schema: object) -> list[dict[str, object]]:
    if isinstance(schema, list):
        return [found for item in schema for found in objects_in(item)]
    if not isinstance(schema, dict):
        return []
    found = [schema] if schema.get("type") == "object" else []
    return found + [item for value in schema.values() for item in objects_in(value)]


@pytest.mark.parametrize("spec", [QuestionSpec, FeedbackSpec])
def test_the_schema_is_strict(spec: type[QuestionSpec | FeedbackSpec]) -> None:
    schema = spec.json_schema()
    text = json.dumps(schema)

    for node in objects_in(schema):
        assert node["additionalProperties"] is False
        properties, required = node["properties"], node["required"]
        assert isinstance(properties, dict)
        assert isinstance(required, list)
        assert sorted(required) == sorted(properties)
    assert objects_in(schema)[0] is schema
    # No references, and nothing OpenAI's strict mode refuses.
    for keyword in ("$ref", "$defs", "title", "default", "minLength", "maxLength"):
        assert f'"{keyword}"' not in text


def test_the_question_schema_states_the_spec_s_limits() -> None:
    properties = QuestionSpec.json_schema()["properties"]
    assert isinstance(properties, dict)

    assert properties["key_points"]["minItems"] == KEY_POINTS_MIN
    assert properties["key_points"]["maxItems"] == KEY_POINTS_MAX
    assert properties["difficulty"] == {"type": "string", "enum": list(Difficulty.values)}


def test_the_feedback_schema_states_the_spec_s_limits() -> None:
    properties = FeedbackSpec.json_schema()["properties"]
    assert isinstance(properties, dict)

    assert properties["score"]["type"] == "integer"
    assert (properties["score"]["minimum"], properties["score"]["maximum"]) == (0, 10)
    assert properties["gaps"]["maxItems"] == FEEDBACK_ITEMS_MAX


# --- The bank and the LLM go through the same spec ---------------------------------------------


def bank_file(directory: Path, item: dict[str, Any]) -> Path:
    path = directory / "topic.json"
    payload = {"slug": "topic", "name": "Topic", "questions": [{"key": "topic-001", **item}]}
    path.write_text(json.dumps(payload))
    return path


def ask() -> llm.GeneratedQuestion:
    return llm.generate_question(topic="ReactJS", difficulty="medium", avoid=[])


@pytest.mark.parametrize(
    "overrides",
    [
        {"key_points": points(KEY_POINTS_MIN - 1)},
        {"key_points": points(KEY_POINTS_MAX + 1)},
        {"key_points": [*points(2), "p" * (POINT_MAX_CHARS + 1)]},
        {"text": "x" * (QUESTION_MAX_CHARS + 1)},
        {"text": "What is \x00JSX?"},
        {"outline": " "},
        {"difficulty": "extreme"},
        {"model": "a field of neither"},
    ],
    ids=["2-points", "7-points", "long-point", "long-text", "nul", "no-outline", "level", "extra"],
)
def test_what_the_bank_refuses_the_llm_path_refuses(
    fake_openai: FakeOpenAI, tmp_path: Path, overrides: dict[str, Any]
) -> None:
    payload = question(**overrides)
    fake_openai.enqueue(ok(payload))

    with pytest.raises(BankFileError) as bank:
        bank_file_read(path=bank_file(tmp_path, payload))
    with pytest.raises(llm.LLMError) as reply:
        ask()

    assert reply.value.reason == Reason.OFF_SCHEMA
    # The same problem, in the same words.
    assert str(bank.value).removeprefix("topic.json question 1: ") in reply.value.detail


def test_what_the_bank_accepts_the_llm_path_accepts_the_same(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    payload = question(text="  What does useEffect's cleanup do? ", difficulty="hard")
    fake_openai.enqueue(ok(payload))

    (from_bank,) = bank_file_read(path=bank_file(tmp_path, payload)).questions
    from_llm = ask()

    assert from_bank.spec == QuestionSpec.parse(from_llm.model_dump(exclude={"model"}))
    assert isinstance(from_llm, QuestionSpec)


# --- Reasons ----------------------------------------------------------------------------------


def test_reasons_read_as_the_words_the_logs_and_notes_always_used() -> None:
    assert {reason.name: str(reason) for reason in Reason} == {
        "TIMEOUT": "timeout",
        "CONNECTION": "connection",
        "SERVER_ERROR": "server_error",
        "RATE_LIMITED": "rate_limited",
        "AUTH": "auth",
        "BAD_REQUEST": "bad_request",
        "REFUSAL": "refusal",
        "MALFORMED": "malformed",
        "EMPTY": "empty",
        "OFF_SCHEMA": "off_schema",
        "OVERLOADED": "overloaded",
        "BUDGET_SPENT": "budget",
        "EMPTY_POOL": "empty_pool",
        "BUSY": "busy",
        "INVALID": "invalid",
        "EXPIRED": "expired",
        "REFERENCE_FAILS": "reference_fails",
        "NO_SANDBOX": "no_sandbox",
    }
    assert {reason for reason in Reason if reason.asks_again} == {
        Reason.MALFORMED,
        Reason.EMPTY,
        Reason.OFF_SCHEMA,
        Reason.REFERENCE_FAILS,  # a generated coding problem whose reference fails its tests
    }
    assert str(GenerationFailed(Reason.SERVER_ERROR, "HTTP 500")) == "server_error: HTTP 500"
    assert GenerationFailed("timeout").reason is Reason.TIMEOUT
