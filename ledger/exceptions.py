"""Every refusal of the ledger has a name. Views map them to HTTP statuses."""


class LedgerError(Exception):
    """Base class: the ledger refused; nothing was written."""


class InvalidAmount(LedgerError):
    """An amount that is not a positive whole number."""


class ReasonRequired(LedgerError):
    """Grants, refunds and adjustments must say why."""


class InsufficientTokens(LedgerError):
    """The available balance (balance - held) does not cover the request."""

    def __init__(self, *, needed: int, available: int) -> None:
        self.needed = needed
        self.available = available
        super().__init__(f"You need {needed} token(s); {available} available.")


class RequestInProgress(LedgerError):
    """The same request id is still being worked on (HTTP 409)."""


class RequestConflict(LedgerError):
    """The request id was already used for other parameters (HTTP 422)."""


class RequestAlreadyFailed(LedgerError):
    """The request id belongs to an attempt that failed and was not charged; use a new id."""


class HoldNotPending(LedgerError):
    """The hold was already captured, released or expired: it cannot be resolved again."""


class HoldExpired(HoldNotPending):
    """The hold outlived its expiry before capture: it was expired, and nothing was charged."""


class NotRefundable(LedgerError):
    """Only a debit can be refunded, and only once."""


class NotCorrectable(LedgerError):
    """An adjustment must name an entry of the same account."""
