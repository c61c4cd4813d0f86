"""Refusals of the question flow, and why a question or feedback could not be had.

Ledger refusals (InsufficientTokens, ...) pass through as is.
"""

from enum import StrEnum, unique


@unique
class Reason(StrEnum):
    """Why a source produced no question (or the model no feedback): one word, the same in the
    log lines, in the ledger's release notes and in the code that decides what to do next."""

    # The model's transport (interviews.llm retries the first four within its time budget).
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    SERVER_ERROR = "server_error"
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    # What the model answered.
    REFUSAL = "refusal"
    MALFORMED = "malformed"  # not JSON
    EMPTY = "empty"  # no content
    OFF_SCHEMA = "off_schema"  # JSON, but not a QuestionSpec (or FeedbackSpec)
    # Limits: this process's model calls (LLM_MAX_CONCURRENCY), the day's (LLM_DAILY_CALL_BUDGET).
    OVERLOADED = "overloaded"
    BUDGET_SPENT = "budget"
    # The question flow.
    EMPTY_POOL = "empty_pool"  # the bank has no question in the topic
    BUSY = "busy"  # concurrent requests kept changing the pool
    INVALID = "invalid"  # every regeneration was unusable or a repeat
    EXPIRED = "expired"  # the reservation expired while the question was generated
    # A generated coding problem: its reference failed its own tests in the sandbox (asked for
    # again), or there is no sandbox here to check it with.
    REFERENCE_FAILS = "reference_fails"
    NO_SANDBOX = "no_sandbox"

    @property
    def asks_again(self) -> bool:
        """An unusable answer, rather than none: asking again may help, so the question flow
        regenerates (free, a bounded number of times)."""
        return self in _ASK_AGAIN


_ASK_AGAIN = frozenset({Reason.MALFORMED, Reason.EMPTY, Reason.OFF_SCHEMA, Reason.REFERENCE_FAILS})


class InterviewError(Exception):
    pass


class GenerationFailed(InterviewError):
    """No valid question could be produced; the reservation was released, nothing charged."""

    reason: Reason
    detail: str

    def __init__(self, reason: Reason | str, detail: str = "") -> None:
        self.reason = Reason(reason)
        self.detail = detail
        super().__init__(f"{self.reason}: {detail}" if detail else str(self.reason))

    @property
    def regenerate(self) -> bool:
        """Whether the flow asks the source again, free (see Reason.asks_again)."""
        return self.reason.asks_again


class OffSchema(GenerationFailed):
    """What a source produced is not a valid question (or feedback): Reason.OFF_SCHEMA, with the
    first thing wrong as the detail. Raised by interviews.spec; asked for again, free."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.OFF_SCHEMA, detail)


class SessionEnded(InterviewError):
    """The session is over: no more questions in it."""


class MockQuestionRefused(SessionEnded):
    """A mock interview takes no question now: it has had all its questions, or the current one
    is still open (answered or timed out first). Refused like an ended session: not charged."""


class AnswerRefused(InterviewError):
    """A mock interview takes no answer to this question: it was answered already, its time
    (and the grace after it) has run out, or the interview has ended. What was stored stays."""


class PoolChanged(InterviewError):
    """Another request changed the pool between proposing and storing: propose again."""


class FeedbackUnavailable(InterviewError):
    """Feedback could not be had just now; the earlier answer and its feedback are kept."""


class FeedbackLimitReached(InterviewError):
    """Feedback was asked for too many times on one question (each can be an LLM call)."""


class AlreadyServed(InterviewError):
    """A generated question repeats one this candidate was already served: propose again, free."""


class FollowUpRefused(InterviewError):
    """No follow-up can be asked on this question now (not answered yet, the chain as deep as it
    goes, none left to ask): refused before anything is reserved."""
