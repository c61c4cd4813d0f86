"""What comes back from the model: the reply's JSON object, parsed by interviews.spec."""

from __future__ import annotations

import json
import re
from typing import Final

from openai.types.chat import ChatCompletion

from interviews.exceptions import OffSchema, Reason
from interviews.llm.errors import LLMError
from interviews.spec import FeedbackSpec, QuestionSpec


class GeneratedQuestion(QuestionSpec):
    """A question as the model wrote it, and the model that wrote it."""

    model: str  # response.model, else settings.OPENAI_MODEL


class GeneratedFeedback(FeedbackSpec):
    """Feedback on one answer as the model wrote it, and the model that wrote it."""

    model: str


def parse_question(completion: ChatCompletion, *, model: str) -> GeneratedQuestion:
    """The reply as a valid question, or LLMError (refusal, empty, malformed, off_schema)."""
    spec = _parsed(QuestionSpec, json_content(completion))
    return GeneratedQuestion(**dict(spec), model=model)


def parse_feedback(completion: ChatCompletion, *, model: str) -> GeneratedFeedback:
    """The reply as valid feedback, or LLMError (refusal, empty, malformed, off_schema)."""
    spec = _parsed(FeedbackSpec, json_content(completion))
    return GeneratedFeedback(**dict(spec), model=model)


def _parsed[S: (QuestionSpec, FeedbackSpec)](spec: type[S], data: object) -> S:
    try:
        return spec.parse(data)
    except OffSchema as exc:
        raise LLMError(exc.reason, exc.detail) from None


def json_content(completion: ChatCompletion) -> object:
    """The first choice's content, decoded from JSON, or LLMError (refusal, empty, malformed)."""
    choices = getattr(completion, "choices", None)
    if not choices:
        raise LLMError(Reason.REFUSAL, "no choices in the response")
    if not isinstance(choices, list):
        raise LLMError(Reason.MALFORMED, "choices is not a list")
    choice = choices[0]
    message = getattr(choice, "message", None)
    if message is None:
        raise LLMError(Reason.MALFORMED, "choice without a message")
    if getattr(message, "refusal", None):
        raise LLMError(Reason.REFUSAL, "the model refused")
    if getattr(choice, "finish_reason", None) == "content_filter":
        raise LLMError(Reason.REFUSAL, "stopped by the content filter")
    content = getattr(message, "content", None)
    if content is None or (isinstance(content, str) and not content.strip()):
        raise LLMError(Reason.EMPTY, "no content")
    if not isinstance(content, str):
        raise LLMError(Reason.MALFORMED, "content is not text")
    try:
        data: object = json.loads(_strip_code_fence(content))
    except ValueError:
        detail = "content is not JSON"
        if getattr(choice, "finish_reason", None) == "length":
            detail += " (cut off at the length limit)"
        raise LLMError(Reason.MALFORMED, detail) from None
    return data


_FENCE_RE: Final[re.Pattern[str]] = re.compile(r"^```[a-zA-Z]*\s*\n(.*)\n\s*```$", re.DOTALL)


def _strip_code_fence(content: str) -> str:
    """Some local models wrap JSON in a Markdown code fence despite response_format."""
    content = content.strip()
    match = _FENCE_RE.match(content)
    return match.group(1) if match else content
