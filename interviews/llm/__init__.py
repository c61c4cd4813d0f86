"""The LLM client: interview questions and answer feedback from an OpenAI-compatible model.

This package is the only code that imports `openai`. It speaks the Chat Completions API with a
strict JSON schema (`response_format`), so OpenAI itself and local servers with an
OpenAI-compatible endpoint (Ollama, vLLM, LM Studio: set OPENAI_BASE_URL) work alike.

    transport   the client, LLM_MAX_CONCURRENCY calls in flight, retries within the time budget
    prompts     the messages and the reply's schema (interviews.spec's, made strict)
    replies     the reply parsed by interviews.spec: a GeneratedQuestion or GeneratedFeedback

Every call either returns validated data or raises `LLMError` with a `Reason`; nothing
half-valid ever leaves this package. Regenerating after an invalid or duplicate question is the
caller's job (LLM_MAX_REGENERATIONS), and `worst_case_seconds()` accounts for it.

The calls are asynchronous (`agenerate_question`, `agenerate_feedback`): a request waiting on
the model holds no thread and no database connection, only a coroutine. Past
LLM_MAX_CONCURRENCY calls in flight in this process a call fails at once with Reason.OVERLOADED
(the caller answers 503, not charged). `generate_question` and `generate_feedback` are the same
calls for synchronous code.

No database access happens here: callers must not hold a transaction open while calling in.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable

from asgiref.sync import async_to_sync
from django.conf import settings
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema

from config.metrics import model_call_count
from config.tracing import model_call_traced
from interviews.budget import MAX_BACKOFF_SECONDS
from interviews.llm.coding import (
    PROBLEM_MAX_TOKENS,
    PROBLEM_RESPONSE_FORMAT,
    REVIEW_MAX_TOKENS,
    REVIEW_RESPONSE_FORMAT,
    GeneratedProblem,
    GeneratedReview,
    parse_problem,
    parse_review,
    problem_messages,
    review_messages,
)
from interviews.llm.errors import REASONS, LLMError
from interviews.llm.prompts import (
    FEEDBACK_MAX_TOKENS,
    FEEDBACK_RESPONSE_FORMAT,
    MAX_AVOID_CHARS,
    MAX_AVOID_QUESTIONS,
    QUESTION_MAX_TOKENS,
    QUESTION_RESPONSE_FORMAT,
    feedback_messages,
    follow_up_messages,
    question_messages,
)
from interviews.llm.replies import (
    GeneratedFeedback,
    GeneratedQuestion,
    parse_feedback,
    parse_question,
)
from interviews.llm.transport import (
    close_clients,
    generation_slot,
    get_client,
    inflight,
    request,
    worst_case_seconds,
)

__all__ = [
    "FEEDBACK_MAX_TOKENS",
    "MAX_AVOID_CHARS",
    "MAX_AVOID_QUESTIONS",
    "MAX_BACKOFF_SECONDS",
    "QUESTION_MAX_TOKENS",
    "REASONS",
    "GeneratedFeedback",
    "GeneratedProblem",
    "GeneratedQuestion",
    "GeneratedReview",
    "LLMError",
    "agenerate_code_problem",
    "agenerate_code_review",
    "agenerate_feedback",
    "agenerate_follow_up",
    "agenerate_question",
    "generate_feedback",
    "generate_question",
    "generation_slot",
    "get_client",
    "inflight",
    "worst_case_seconds",
]

logger = logging.getLogger("interviews.llm")


async def _generate[T](
    *,
    purpose: str,
    messages: list[ChatCompletionMessageParam],
    response_format: ResponseFormatJSONSchema,
    max_tokens: int,
    parse: Callable[[ChatCompletion, str], T],
) -> T:
    attempts = 0
    started = time.monotonic()
    completion = None
    try:
        with (
            generation_slot(),
            model_call_traced(
                model=settings.OPENAI_MODEL, base_url=settings.OPENAI_BASE_URL
            ) as traced,
        ):
            completion, attempts = await request(
                messages=messages, response_format=response_format, max_tokens=max_tokens
            )
            traced.completed(completion)
        model = getattr(completion, "model", None)
        if not isinstance(model, str) or not model:
            model = settings.OPENAI_MODEL
        parsed = parse(completion, model)
    except LLMError as exc:
        exc.attempts = exc.attempts or attempts
        elapsed = time.monotonic() - started
        # Refused at once (overloaded: nothing sent) has no time worth a histogram's bucket.
        model_call_count(
            purpose=purpose,
            outcome=exc.reason,
            seconds=elapsed if exc.attempts else None,
            usage=getattr(completion, "usage", None),
        )
        # The caller writes the one log line of a failed request; str(exc) carries all of this.
        exc.detail = (
            f"{exc.detail or '-'} (model {settings.OPENAI_MODEL}, "
            f"{exc.attempts} attempt(s), {elapsed:.1f}s)"
        )
        logger.debug("%s generation failed: %s", purpose, exc)
        raise
    model_call_count(
        purpose=purpose,
        outcome="ok",
        seconds=time.monotonic() - started,
        usage=getattr(completion, "usage", None),
    )
    return parsed


async def agenerate_question(
    *, topic: str, difficulty: str, avoid: list[str], focus: list[str] | None = None
) -> GeneratedQuestion:
    """One new interview question on `topic` (display name) at `difficulty`.

    `avoid`: texts of the questions this candidate was recently served in this topic, most
    recent first; the first MAX_AVOID_QUESTIONS go into the prompt, each cut to
    MAX_AVOID_CHARS. Whether the result is on topic or a duplicate is for the caller to judge.
    Raises LLMError.
    """
    return await _generate(
        purpose="question",
        messages=question_messages(topic=topic, difficulty=difficulty, avoid=avoid, focus=focus),
        response_format=QUESTION_RESPONSE_FORMAT,
        max_tokens=QUESTION_MAX_TOKENS,
        parse=lambda completion, model: parse_question(completion, model=model),
    )


async def agenerate_follow_up(
    *, question: str, key_points: list[str], missed: list[str], answer: str, difficulty: str
) -> GeneratedQuestion:
    """One follow-up question probing the candidate's `answer` to `question` and what it
    `missed`, at `difficulty`. The answer is untrusted: it is sent inside <candidate_answer>
    delimiters, with any delimiter tag in it neutralised. Raises LLMError."""
    return await _generate(
        purpose="follow-up",
        messages=follow_up_messages(
            question=question,
            key_points=key_points,
            missed=missed,
            answer=answer,
            difficulty=difficulty,
        ),
        response_format=QUESTION_RESPONSE_FORMAT,
        max_tokens=QUESTION_MAX_TOKENS,
        parse=lambda completion, model: parse_question(completion, model=model),
    )


async def agenerate_feedback(
    *, question: str, key_points: list[str], outline: str, answer: str
) -> GeneratedFeedback:
    """Feedback on a candidate's `answer` to `question`. The answer is untrusted: it is sent
    inside <candidate_answer> delimiters, with any delimiter tag in it neutralised.
    Raises LLMError.
    """
    return await _generate(
        purpose="feedback",
        messages=feedback_messages(
            question=question, key_points=key_points, outline=outline, answer=answer
        ),
        response_format=FEEDBACK_RESPONSE_FORMAT,
        max_tokens=FEEDBACK_MAX_TOKENS,
        parse=lambda completion, model: parse_feedback(completion, model=model),
    )


def _blocking[**P, T](call: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    """The same call for synchronous code: it runs in an event loop of its own."""

    async def in_own_loop(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await call(*args, **kwargs)
        finally:
            await close_clients()

    return functools.wraps(call)(async_to_sync(in_own_loop))


generate_question = _blocking(agenerate_question)
generate_feedback = _blocking(agenerate_feedback)


async def agenerate_code_problem(
    *, topic: str, language: str, difficulty: str, avoid: list[str]
) -> GeneratedProblem:
    """One new coding problem with its reference and tests (not yet run: the caller runs the
    reference in the sandbox before using it). Raises LLMError."""
    return await _generate(
        purpose="coding problem",
        messages=problem_messages(
            topic=topic, language=language, difficulty=difficulty, avoid=avoid
        ),
        response_format=PROBLEM_RESPONSE_FORMAT,
        max_tokens=PROBLEM_MAX_TOKENS,
        parse=lambda completion, model: parse_problem(completion, model=model),
    )


async def agenerate_code_review(
    *, problem: str, complexity: str, report: str, code: str, note: str
) -> GeneratedReview:
    """The model's review of a solution's complexity and quality, given the tests' report. The
    code and the note are untrusted: sent inside delimiters, neutralised. Raises LLMError."""
    return await _generate(
        purpose="code review",
        messages=review_messages(
            problem=problem, complexity=complexity, report=report, code=code, note=note
        ),
        response_format=REVIEW_RESPONSE_FORMAT,
        max_tokens=REVIEW_MAX_TOKENS,
        parse=lambda completion, model: parse_review(completion, model=model),
    )
