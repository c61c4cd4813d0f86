"""The two-phase charge as a caller drives it, with a pluggable generator in the middle."""

from collections.abc import Callable
from contextlib import suppress

from ledger.exceptions import HoldNotPending
from ledger.models import Hold
from ledger.services import hold_capture, hold_release, hold_reserve


def buy(
    *,
    account,
    request_id: str,
    generate: Callable[[], str],
    purpose: str = "question:test",
    actor=None,
) -> tuple[Hold, bool]:
    """reserve -> generate (no transaction open) -> capture; release on any failure.

    Returns (hold, replay). Raises what reserve or the generator raised.
    """
    reservation = hold_reserve(account=account, request_id=request_id, purpose=purpose, actor=actor)
    if reservation.replay:
        return reservation.hold, True
    try:
        text = generate()
        hold_capture(hold=reservation.hold, reason=f"Question: {text}", actor=actor)
    except BaseException as exc:
        with suppress(HoldNotPending):  # already expired: nothing left to free
            hold_release(hold=reservation.hold, note=f"failed: {exc.__class__.__name__}")
        raise
    return reservation.hold, False
