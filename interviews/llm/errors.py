"""How a model call fails: LLMError, with one of the Reason members below."""

from __future__ import annotations

from typing import Final

from interviews.exceptions import Reason

#: The reasons an LLMError can carry.
REASONS: Final[frozenset[Reason]] = frozenset(
    {
        Reason.TIMEOUT,
        Reason.CONNECTION,
        Reason.SERVER_ERROR,
        Reason.RATE_LIMITED,
        Reason.MALFORMED,
        Reason.REFUSAL,
        Reason.EMPTY,
        Reason.OFF_SCHEMA,
        Reason.AUTH,
        Reason.BAD_REQUEST,
        Reason.OVERLOADED,
    }
)


class LLMError(Exception):
    """Generation failed; nothing was produced. `reason` is one of `REASONS`.

    Reason.OVERLOADED: this process already has LLM_MAX_CONCURRENCY calls in flight, nothing was
    sent. `detail` is a short human-readable explanation that never contains credentials,
    prompts or the candidate's answer. `attempts` is the number of HTTP requests made before
    giving up (0 if none was sent).
    """

    reason: Reason
    detail: str
    attempts: int

    def __init__(self, reason: Reason | str, detail: str = "") -> None:
        self.reason = Reason(reason)
        self.detail = detail
        self.attempts = 0
        super().__init__(self.reason, detail)

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else str(self.reason)
