"""Acts on what a mail server tells us about an e-mail we sent: a delivery status report
(RFC 3464, a "bounce").

A permanent failure (status 5.x.x) means the address cannot receive mail: the message we sent is
`undelivered` (`dialog.outbox.record_delivery`, forward only), and the address is marked
undeliverable for every customer holding it (`consent.models.Undeliverable`), so the contact
policy stops choosing e-mail for them. A transient one (4.x.x: the server keeps trying) changes
no state: it is noted on the customer's timeline and in the audit log, for staff to see why a
message is late. One transaction, audited as the mail system; a report about an address no
customer holds changes nothing but the message's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from channels.base import ChannelName
from consent.models import Undeliverable
from consent.types import Channel
from crm_core.identities import InvalidIdentity, normalise
from crm_core.models import Customer, Identity, IdentityKind, InteractionKind
from crm_core.sqltypes import utcnow
from crm_core.timeline import add_interaction
from dialog.outbox import record_delivery
from sastre.db import SessionMaker
from sastre.operations.unit import Unit, unit_of_work

if TYPE_CHECKING:  # the parser's libraries load with the e-mail intake, not with every act
    from channels.email.parse import Bounce

__all__ = ["MAIL_SYSTEM", "BounceOutcome", "do_record_email_bounces"]

MAIL_SYSTEM = "provider:email"  # the actor of what delivery reports change


@dataclass(frozen=True, slots=True)
class BounceOutcome:
    moved: bool  # the bounced message's delivery state moved forward
    undeliverable: tuple[str, ...] = ()  # addresses marked undeliverable by this report
    noted: tuple[str, ...] = ()  # addresses with a transient failure noted


async def do_record_email_bounces(
    sessionmaker: SessionMaker,
    bounces: Sequence[Bounce],
    *,
    message_id: str | None,
    region: str,
) -> BounceOutcome:
    """A delivery status report: see the module's note."""
    async with unit_of_work(sessionmaker, MAIL_SYSTEM) as unit:
        moved = False
        permanent = [b for b in bounces if b.permanent and b.action in ("failed", "")]
        if message_id and permanent:
            first = permanent[0]
            moved = await record_delivery(
                unit.session,
                channel=ChannelName.EMAIL,
                provider_id=message_id,
                state="undelivered",
                code=first.status,
                reason=first.diagnostic or f"bounced: {first.status}",
            )
        marked: list[str] = []
        noted: list[str] = []
        for bounce in bounces:
            if bounce in permanent:
                if await _mark_undeliverable(unit, bounce, message_id, region):
                    marked.append(bounce.recipient)
            elif not bounce.permanent and await _note_transient(unit, bounce, message_id, region):
                noted.append(bounce.recipient)
    return BounceOutcome(moved, tuple(marked), tuple(noted))


async def _holders(unit: Unit, address: str, region: str) -> tuple[str, list[int]]:
    """The address as identities store it, and the live customers holding it."""
    try:
        value = normalise(IdentityKind.EMAIL.value, address, region)
    except InvalidIdentity:
        return address, []
    rows = await unit.session.scalars(
        select(Identity.customer_id)
        .join(Customer, Customer.id == Identity.customer_id)
        .where(
            Identity.kind == IdentityKind.EMAIL.value,
            Identity.value == value,
            Customer.merged_into_id.is_(None),
        )
    )
    return value, sorted(set(rows))


async def _mark_undeliverable(
    unit: Unit, bounce: Bounce, message_id: str | None, region: str
) -> bool:
    address, customers = await _holders(unit, bounce.recipient, region)
    proof = {
        "address": address,
        "status": bounce.status,
        "diagnostic": bounce.diagnostic,
        "message_id": message_id,
    }
    marked = False
    for customer_id in customers:
        key = (customer_id, Channel.EMAIL.value, address)
        if await unit.session.get(Undeliverable, key) is not None:
            continue  # a repeated report adds nothing
        unit.session.add(
            Undeliverable(
                customer_id=customer_id,
                channel=Channel.EMAIL.value,
                address=address,
                reason=f"bounce {bounce.status}"[:200],
                at=utcnow(),
            )
        )
        unit.audit("email.undeliverable", customer_id, proof)
        unit.publish("contact.undeliverable", customer_id, channel=Channel.EMAIL.value)
        marked = True
    return marked


async def _note_transient(unit: Unit, bounce: Bounce, message_id: str | None, region: str) -> bool:
    address, customers = await _holders(unit, bounce.recipient, region)
    data = {
        "address": address,
        "status": bounce.status,
        "action": bounce.action,
        "diagnostic": bounce.diagnostic,
        "message_id": message_id,
    }
    for customer_id in customers:
        await add_interaction(
            unit.session,
            customer_id,
            InteractionKind.NOTE,
            f"E-mail to {address} delayed ({bounce.status}): the mail server keeps trying",
            channel=Channel.EMAIL.value,
            actor=MAIL_SYSTEM,
            data=data,
            flush=False,
        )
        unit.audit("email.delayed", customer_id, data)
    return bool(customers)
