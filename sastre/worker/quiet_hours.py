"""Marketing keeps the recipient's quiet hours when it is sent, not only when it was queued.

The contact policy let the message go at the moment it was queued (or deferred it to the next
opening), but a send can come later than that: behind a channel's rate limit (a US long code
sends about one a second), after a worker outage, or when staff retry it. Solicitations may not
reach anyone before 08:00 or after 21:00 where they are (US TCPA; 20:00 in Florida, Oklahoma and
Washington), nor outside the customer's own contact window, so the worker asks again, at the
claim, for every marketing message: one whose recipient is in quiet hours now waits, queued,
until the next opening (`consent.policy.next_opening`, the same rule the policy applies); one
whose window never opens is failed (`quiet_hours`). Only the hours are asked again: consent is
checked again by the claim itself, and the frequency caps counted this message when it was
queued.

Service messages are not held: most are answers to a customer who has just written, at whatever
hour they wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from consent.policy import next_opening
from consent.types import Purpose
from dialog.outbox import Claimed
from sastre.operations.outreach import Outreach

__all__ = ["QuietHours"]


@dataclass(frozen=True, slots=True)
class QuietHours:
    """The worker's second look at the hours (the claim's `wait` hook), with the site's time
    zone and contact hours as the contact policy reads them (`Outreach.contact_state`)."""

    outreach: Outreach = field(default_factory=lambda: Outreach(frozenset()))

    async def __call__(
        self, session: AsyncSession, claimed: Sequence[Claimed], now: datetime
    ) -> dict[int, datetime | None]:
        """The marketing messages of `claimed` that may not go at `now`, by message id: when
        they may (None: never, the customer's window never meets the contact hours)."""
        openings: dict[int, datetime | None] = {}  # by customer: a campaign sends each one
        waiting: dict[int, datetime | None] = {}
        for c in claimed:
            if c.purpose != Purpose.MARKETING:
                continue
            if c.customer_id not in openings:
                state = await self.outreach.contact_state(session, c.customer_id, now)
                openings[c.customer_id] = next_opening(
                    now, state.timezone, state.contact_hours, state.window
                )
            opening = openings[c.customer_id]
            if opening is None or opening > now:
                waiting[c.message_id] = opening
        return waiting
