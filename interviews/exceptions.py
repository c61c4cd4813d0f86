"""Refusals of the question flow. Ledger refusals (InsufficientTokens, ...) pass through as is."""


class InterviewError(Exception):
    pass


class GenerationFailed(InterviewError):
    """No valid question could be produced; the reservation was released, nothing charged."""

    def __init__(self, reason: str, detail: str = "", *, regenerate: bool = False) -> None:
        self.reason = reason
        self.detail = detail
        # True when the answer was unusable (not JSON, off-schema, empty) rather than absent:
        # asking again may help, so the flow regenerates (free, a bounded number of times).
        self.regenerate = regenerate
        super().__init__(f"{reason}: {detail}" if detail else reason)


class SessionEnded(InterviewError):
    """The session is over: no more questions in it."""


class PoolChanged(InterviewError):
    """Another request changed the pool between proposing and storing: propose again."""


class FeedbackUnavailable(InterviewError):
    """Feedback could not be had just now; the earlier answer and its feedback are kept."""


class FeedbackLimitReached(InterviewError):
    """Feedback was asked for too many times on one question (each can be an LLM call)."""


class AlreadyServed(InterviewError):
    """A generated question repeats one this candidate was already served: propose again, free."""
