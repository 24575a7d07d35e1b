"""Delivery states and the one rule about them: once a provider has it, they never move back.

    queued ⇄ sending → sent → delivered → read
                 ↘        ↘          (failed, undelivered: terminal)

A provider's status callbacks arrive out of order (a `sent` after the `delivered`), twice, or
late after a `failed`; each is judged against what is stored, and only a step forward is taken.
`sending` means a worker holds the row and its call may be in flight. A row the worker gives
back without a provider having taken it (an attempt that failed and waits for its retry, a worker
stopping) is `queued` again, with the time it is due (`due_at`) and the last attempt's error:
nothing left our hands, and no provider's report can be about it (it has no provider id yet).
Pure: no database.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["PENDING", "TERMINAL", "DeliveryState", "advance", "rank"]


class DeliveryState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    UNDELIVERED = "undelivered"


_RANK: Final = {
    DeliveryState.QUEUED: 0,
    DeliveryState.SENDING: 1,
    DeliveryState.SENT: 2,
    DeliveryState.DELIVERED: 3,
    DeliveryState.READ: 4,
}
TERMINAL: Final = frozenset({DeliveryState.FAILED, DeliveryState.UNDELIVERED})
# What a worker may still have to send.
PENDING: Final = frozenset({DeliveryState.QUEUED, DeliveryState.SENDING})


def rank(state: DeliveryState) -> int:
    """Position on the way to the reader; the terminal failures come after everything."""
    return _RANK.get(state, 5)


def advance(current: DeliveryState, new: DeliveryState) -> DeliveryState | None:
    """The state to store when `new` is reported for a message in `current`; None: ignore it.

    Forward only. A failure ends a message that has not reached the customer yet; once the
    provider said it was delivered, a later failure report is stale and changes nothing.
    """
    if current in TERMINAL or new == current:
        return None
    if new in TERMINAL:
        return new if rank(current) <= rank(DeliveryState.SENT) else None
    return new if rank(new) > rank(current) else None
