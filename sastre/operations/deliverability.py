"""An address shown to work again: its undeliverable marks lifted, whoever's they are.

A mark (`consent.models.Undeliverable`) keeps the contact policy off one address on one channel.
The channels lift it on evidence that the address works: Twilio reporting a message delivered to
the number (`sastre.operations.sms`), a person writing from the e-mail address with proof that
it is theirs (`sastre.operations.email`). A wrong lift costs one more bounce, which marks the
address again; a mark never lifted keeps a working address off for good.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from consent.models import Undeliverable
from consent.types import Channel
from sastre.operations.unit import Unit

__all__ = ["is_marked", "lift_marks"]


def _marks(channel: Channel, address: str) -> ColumnElement[bool]:
    return (Undeliverable.channel == channel.value) & (Undeliverable.address == address)


async def is_marked(session: AsyncSession, channel: Channel, address: str) -> bool:
    """Whether anyone's mark is on `address` (as identities store it) on `channel`: a read, so
    evidence about an address never marked (most of it) costs no write transaction."""
    return bool(await session.scalar(select(exists().where(_marks(channel, address)))))


async def lift_marks(
    unit: Unit,
    channel: Channel,
    address: str,
    proof: dict[str, Any],
    *,
    before: datetime | None = None,
) -> bool:
    """Remove the marks on `address` (as identities store it) on `channel`, each customer's,
    audited with `proof` and published after commit; whether there were any. With `before`
    (when the message that proves the address works went), only the marks made as of that
    moment or earlier: a newer failure outweighs an older success reported late, and the same
    send's failure (reported before its delivery, callbacks come in any order) does not."""
    which = _marks(channel, address)
    if before is not None:
        which = which & (Undeliverable.at <= before)
    lifted = await unit.session.execute(
        delete(Undeliverable)
        .where(which)
        .returning(Undeliverable.customer_id)
        .execution_options(synchronize_session=False)
    )
    customers = sorted(set(lifted.scalars()))
    for customer_id in customers:
        unit.audit(f"{channel.value}.deliverable", customer_id, proof)
        unit.publish("contact.deliverable", customer_id, channel=channel.value)
    return bool(customers)
