"""Acts on what a mail server tells us about an e-mail we sent: a delivery status report
(RFC 3464, a "bounce") that arrives by mail, or the SMTP server's own refusal when we send.

A report is believed only when it is about a message we sent to that recipient
(`channels.email.bounces.believe_report`: the Message-ID it returns is one of our outbox rows',
and its Final-Recipient or Original-Recipient is the address that row went to). Anyone can mail
the inbound address, and a forged report must not silence a customer: a report that is not
believed changes nothing and is kept in the audit log (`email.report_ignored`) with why.

A believed failure (the server gave up: `Action: failed`, or a 5.x.x with no Action; a 4.x.x
too once its queue expired) means the message we sent is `undelivered`
(`dialog.outbox.record_delivery`, forward only). Whether the *address* is undeliverable is one
table for reports and SMTP refusals alike (`channels.email.bounces.address_verdict`: 5.1.1 user
unknown, 5.1.2 no such domain...): then it is marked for every customer holding it
(`consent.models.Undeliverable`), so the contact policy stops choosing e-mail for them. Any other
permanent failure (5.7.1 refused as spam, a full mailbox) and a transient one (4.x.x: the server
keeps trying) are noted on the customer's timeline for staff, and change no state. One
transaction, audited as the mail system.

A mark is lifted when a person writes to us from the address with proof that it is theirs
(`do_lift_bounce_marks`: DKIM aligned with the From domain, or a trusted relay's word): mail
leaves that mailbox, so it exists again (a server's 5.1.1 can also be its own mistake). Mail
without proof lifts nothing: anyone can write any From.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from channels.base import ChannelName
from consent.models import Undeliverable
from consent.types import Channel
from crm_core.identities import InvalidIdentity, normalise
from crm_core.models import Customer, Identity, IdentityKind, InteractionKind
from crm_core.sqltypes import utcnow
from crm_core.timeline import add_interaction
from dialog.models import Message
from dialog.outbox import OutboxEntry, Result, record_delivery
from sastre.db import SessionMaker
from sastre.operations.deliverability import is_marked, lift_marks
from sastre.operations.unit import Unit, unit_of_work

if TYPE_CHECKING:  # the parser's libraries load with the e-mail intake, not with every act
    from channels.email.parse import Bounce

__all__ = [
    "MAIL_SYSTEM",
    "BounceOutcome",
    "do_file_unattributed",
    "do_lift_bounce_marks",
    "do_record_email_bounces",
    "settle_email_refusal",
]

MAIL_SYSTEM = "provider:email"  # the actor of what delivery reports change


@dataclass(frozen=True, slots=True)
class BounceOutcome:
    moved: bool  # the bounced message's delivery state moved forward
    undeliverable: tuple[str, ...] = ()  # addresses marked undeliverable by this report
    noted: tuple[str, ...] = ()  # addresses with a failure noted, the address kept
    ignored: tuple[str, ...] = ()  # recipients of a report not about our message to them


async def _sent_to(unit: Unit, message_id: str | None) -> list[str]:
    """The addresses our outbox sent a message with this Message-ID to."""
    if not message_id:
        return []
    rows = await unit.session.scalars(
        select(Message.address)
        .join(OutboxEntry, OutboxEntry.message_id == Message.id)
        .where(
            OutboxEntry.channel == ChannelName.EMAIL.value,
            OutboxEntry.provider_id == message_id,
        )
    )
    return list(rows)


async def do_record_email_bounces(
    sessionmaker: SessionMaker,
    bounces: Sequence[Bounce],
    *,
    message_id: str | None,
    region: str,
    reported_by: str | None = None,
) -> BounceOutcome:
    """A delivery status report: see the module's note. `reported_by` is the report's From,
    kept with a report that is not believed."""
    from channels.email.bounces import address_verdict, believe_report

    async with unit_of_work(sessionmaker, MAIL_SYSTEM) as unit:
        sent_to = await _sent_to(unit, message_id)
        moved = False
        marked: list[str] = []
        noted: list[str] = []
        ignored: list[str] = []
        for bounce in bounces:
            verdict = believe_report(bounce, about=message_id, sent_to=sent_to)
            if not verdict.believed:
                unit.audit(
                    "email.report_ignored",
                    None,
                    {**_facts(bounce, message_id), "from": reported_by, "why": verdict.reason},
                )
                ignored.append(bounce.recipient)
                continue
            # "failed" is the server giving up (RFC 3464 2.3.3), whatever the status: a 4.x.x
            # too when its queue expired (Postfix's 4.4.1, Exchange's 4.4.7). Without an
            # Action, the status says.
            failed = bounce.action == "failed" or (bounce.permanent and not bounce.action)
            if failed and not moved:
                moved = await record_delivery(
                    unit.session,
                    channel=ChannelName.EMAIL,
                    provider_id=str(message_id),
                    state="undelivered",
                    code=bounce.status,
                    reason=bounce.diagnostic or f"bounced: {bounce.status}",
                )
            # Still being tried: a 4.x.x not given up on, or a server that says "delayed"
            # whatever its status. A report of success (2.x.x: delivered...) changes nothing.
            trying = not failed and (bounce.status.startswith("4.") or bounce.action == "delayed")
            if failed and address_verdict(bounce.status).undeliverable:
                if await _mark_undeliverable(unit, bounce, message_id, region):
                    marked.append(bounce.recipient)
            elif failed:
                if await _note(unit, bounce, message_id, region, "failed"):
                    noted.append(bounce.recipient)
            elif trying and await _note(unit, bounce, message_id, region, "delayed"):
                noted.append(bounce.recipient)
    return BounceOutcome(moved, tuple(marked), tuple(noted), tuple(ignored))


def _facts(bounce: Bounce, message_id: str | None) -> dict[str, Any]:
    return {
        "recipient": bounce.recipient,
        "original_recipient": bounce.original_recipient,
        "status": bounce.status,
        "action": bounce.action,
        "diagnostic": bounce.diagnostic,
        "message_id": message_id,
    }


async def settle_email_refusal(unit: Unit, result: Result, *, region: str) -> None:
    """A send the SMTP server refused for good: if its status says the address cannot receive
    mail (5.1.1 user unknown...), the address is marked undeliverable, in the worker's unit (the
    one that marks the message failed), as the mail system's act."""
    from channels.email.bounces import address_verdict

    verdict = address_verdict(result.code)
    if not verdict.undeliverable:
        return
    system = Unit(unit.session, MAIL_SYSTEM, unit.events)  # same transaction, same events
    address, customers = await _holders(system, result.claimed.address, region)
    proof = {
        "address": address,
        "status": result.code,
        "refused": result.reason or "",
        "message_id": result.claimed.message_id,
        "why": verdict.reason,
    }
    await _mark(system, address, customers, f"refused {result.code}", proof)


async def do_lift_bounce_marks(
    sessionmaker: SessionMaker,
    reader: SessionMaker,
    address: str,
    *,
    region: str,
    message_id: int | None,
) -> bool:
    """A customer wrote from `address` and proved it theirs: its e-mail marks are lifted,
    audited (`email.deliverable`) with the message that proved it. Whether there were any.
    Looked for with `reader` first: an address never marked costs no write transaction."""
    try:
        value = normalise(IdentityKind.EMAIL.value, address, region)
    except InvalidIdentity:
        return False
    async with reader() as session:
        if not await is_marked(session, Channel.EMAIL, value):
            return False
    async with unit_of_work(sessionmaker, MAIL_SYSTEM) as unit:
        proof = {"address": value, "message_id": message_id, "why": "proven mail from it"}
        return await lift_marks(unit, Channel.EMAIL, value, proof)


async def do_file_unattributed(sessionmaker: SessionMaker, customer_id: int, address: str) -> bool:
    """The lead that mail with no usable sender is filed under is never written to: its address
    (in a reserved domain) is marked undeliverable, once. Whether it was marked now."""
    async with unit_of_work(sessionmaker, MAIL_SYSTEM) as unit:
        proof = {"address": address, "why": "mail with no usable sender is filed here"}
        return await _mark(unit, address, [customer_id], "no sender: unattributed mail", proof)


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
    return await _mark(unit, address, customers, f"bounce {bounce.status}", proof)


async def _mark(
    unit: Unit, address: str, customers: list[int], reason: str, proof: dict[str, Any]
) -> bool:
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
                reason=reason[:200],
                at=utcnow(),
            )
        )
        unit.audit("email.undeliverable", customer_id, proof)
        unit.publish("contact.undeliverable", customer_id, channel=Channel.EMAIL.value)
        marked = True
    return marked


_NOTES = {
    "delayed": "E-mail to {address} delayed ({status}): the mail server keeps trying",
    "failed": "E-mail to {address} not delivered ({status}); the address is kept",
}


async def _note(unit: Unit, bounce: Bounce, message_id: str | None, region: str, what: str) -> bool:
    """A failure that changes no state, on the timeline of every customer holding the address."""
    address, customers = await _holders(unit, bounce.recipient, region)
    data = {**_facts(bounce, message_id), "address": address}
    for customer_id in customers:
        await add_interaction(
            unit.session,
            customer_id,
            InteractionKind.NOTE,
            _NOTES[what].format(address=address, status=bounce.status),
            channel=Channel.EMAIL.value,
            actor=MAIL_SYSTEM,
            data=data,
            flush=False,
        )
        unit.audit(f"email.{what}", customer_id, data)
    return bool(customers)
