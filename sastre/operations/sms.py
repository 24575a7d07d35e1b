"""Acts on what Twilio tells us about a message we sent: its delivery state, and what its error
says about the number.

A status callback moves the message's delivery state forward only (`dialog.outbox`: callbacks
arrive out of order, twice, late). Its error code may say more than "this message failed":
21610 means the number sent STOP to Twilio itself, so SMS consent is revoked in our ledger too
(source `provider`: Twilio blocks the number already, and what we record must agree with what
will happen), unless the refused message went before the customer's latest START (a late
callback about an old send is history, audited as `sms.opt_out_report_stale`);
30003/30005/30006 mean the number cannot receive SMS, and the contact policy stops choosing that
channel for it (`consent.models.Undeliverable`). A message *delivered* to a
number clears its mark: the number receives SMS again (30003, "unreachable handset", is often a
phone switched off for a while; the customer writing to us again and getting our answer is the
usual way back). Either report may come late: a delivery reported late lifts no mark made
from a newer send's failure, a failure reported late marks nothing once a newer send was
delivered, and an error about a message already recorded as delivered changes nothing (nor
does it revoke consent): the handset took that very message. All of it in one transaction,
audited as the provider; the number's customer is found by their phone identity, so a message
that is not ours (or an identity since removed) changes nothing but the delivery state.

Twilio may say the same when it refuses a send (21610 at the API): the worker's hook
`settle_sms_refusal` applies it in the transaction that records the failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import ChannelName
from channels.sms import OPTED_OUT_CODES, UNDELIVERABLE_CODES
from channels.sms_webhooks import DeliveryReport
from consent.ledger import hold_consent, record_consent
from consent.models import ConsentEvent, Undeliverable
from consent.replies import opted_out_of_all
from consent.types import Action, Channel, Purpose, Source
from crm_core.customers import CustomerNotFound, find_customer
from crm_core.identities import InvalidIdentity, normalise
from crm_core.models import IdentityKind, Interaction, InteractionKind
from crm_core.sqltypes import utcnow
from dialog.models import Message
from dialog.outbox import DeliveryAttempt, DeliveryState, OutboxEntry, Result, record_delivery
from dialog.outbox.models import ParkedReport
from sastre.db import SessionMaker
from sastre.operations.deliverability import lift_marks
from sastre.operations.unit import Unit, unit_of_work

__all__ = [
    "PROVIDER",
    "SmsStatusOutcome",
    "apply_sms_error",
    "do_record_sms_status",
    "settle_sms_refusal",
]

PROVIDER = "provider:twilio"  # the actor of what Twilio's reports change
SENT = "sent"  # the outcome of an attempt the provider took (`dialog.outbox.queue`)
_DELIVERED = (DeliveryState.DELIVERED.value, DeliveryState.READ.value)


@dataclass(frozen=True, slots=True)
class SmsStatusOutcome:
    moved: bool  # the message's delivery state moved forward
    revoked: bool = False  # SMS consent was revoked by this report
    undeliverable: bool = False  # the number was marked undeliverable by this report
    deliverable: bool = False  # the number's undeliverable mark was cleared by this report


async def do_record_sms_status(
    sessionmaker: SessionMaker, report: DeliveryReport, *, region: str
) -> SmsStatusOutcome:
    """A status callback: the delivery state, and what its error code says about the number."""
    async with unit_of_work(sessionmaker, PROVIDER) as unit:
        moved = await record_delivery(
            unit.session,
            channel=ChannelName.SMS,
            provider_id=report.provider_id,
            state=report.state,
            code=report.code,
            reason=report.reason,
        )
        evidence = {"message_sid": report.provider_id, "status": report.state}
        delivered = report.state == DeliveryState.DELIVERED.value
        ours = report.code or delivered
        sent_at = await _sent_at(unit.session, report.provider_id) if ours else None
        # An error about a message the handset took (its row says delivered already: the
        # callbacks came out of order) says nothing about the number now.
        taken = bool(report.code) and not moved and await _delivered(unit.session, report)
        revoked, undeliverable = await apply_sms_error(
            unit,
            address=report.address,
            code=report.code,
            region=region,
            evidence=evidence,
            sent_at=sent_at,
            delivered=taken,
        )
        deliverable = False
        if delivered:
            # Whether or not the report moved our row (a callback that outran the worker is
            # parked, its send not yet recorded: it went just now): the carrier handed a
            # message to that handset, so it receives SMS, as of when that message went. A
            # late report about an older send lifts no mark made from a newer one's failure.
            number = _stored_number(report.address, region)
            proof = {**evidence, "address": number}
            deliverable = await lift_marks(unit, Channel.SMS, number, proof, before=sent_at)
    return SmsStatusOutcome(moved, revoked, undeliverable, deliverable)


async def settle_sms_refusal(unit: Unit, result: Result, *, region: str) -> None:
    """A send Twilio refused for good: what its code says about the number, recorded in the
    worker's unit (the one that marks the message failed), as the provider's act."""
    provider = Unit(unit.session, PROVIDER, unit.events)  # same transaction, same events
    evidence = {"message_id": result.claimed.message_id, "refused": result.reason or ""}
    await apply_sms_error(
        provider, address=result.claimed.address, code=result.code, region=region, evidence=evidence
    )


async def apply_sms_error(
    unit: Unit,
    *,
    address: str,
    code: str | None,
    region: str,
    evidence: dict[str, Any],
    sent_at: datetime | None = None,
    delivered: bool = False,
) -> tuple[bool, bool]:
    """What an SMS error code says about the number, recorded in the unit's transaction:
    (consent revoked now, marked undeliverable now). Nothing for other codes, for a number no
    customer holds, or for what is recorded already (a repeated callback adds nothing).

    `sent_at`, when the refused message went: an opt-out error about a message sent before the
    customer opted in again (START since) is history, not a new STOP (a late callback).
    `delivered`: the message the error is about was delivered (reported first): history too."""
    if code not in OPTED_OUT_CODES and code not in UNDELIVERABLE_CODES:
        return False, False
    session = unit.session
    try:
        customer = await find_customer(session, IdentityKind.PHONE.value, address, region)
    except (CustomerNotFound, InvalidIdentity):
        return False, False
    # What is recorded already is read after the customer's other consent changes (another
    # callback about the same number) have committed: two at once both found nothing recorded.
    await hold_consent(session, customer.id)
    proof = {**evidence, "error_code": code, "address": address}
    if delivered:
        unit.audit("sms.error_report_stale", customer.id, proof)
        return False, False
    if code in OPTED_OUT_CODES:
        # Nothing to do only when nothing is left to revoke: staff may have revoked service
        # alone, and marketing by SMS to a number that opted out at the carrier must stop too.
        if await opted_out_of_all(session, customer.id, Channel.SMS):
            return False, False
        if sent_at is not None and await _opted_in_since(session, customer.id, sent_at):
            unit.audit("sms.opt_out_report_stale", customer.id, proof)
            return False, False
        for purpose in (Purpose.SERVICE, Purpose.MARKETING):
            await record_consent(
                session,
                customer.id,
                Channel.SMS,
                purpose,
                Action.REVOKE,
                Source.PROVIDER,
                actor=unit.actor,
                evidence=proof,
            )
        unit.publish("consent.changed", customer.id, source=Source.PROVIDER.value)
        return True, False
    number = _stored_number(address, region)
    marked = await _mark_undeliverable(unit, session, customer.id, number, code, proof, sent_at)
    return False, marked


async def _delivered(session: AsyncSession, report: DeliveryReport) -> bool:
    """Whether the message the report is about is known to be delivered (or read): its row
    says so, or, its send not recorded yet, a report parked for it does (both callbacks outran
    the worker's commit; the error, later in Twilio's order, is history all the same)."""
    state = await session.scalar(
        select(OutboxEntry.state).where(
            OutboxEntry.channel == ChannelName.SMS.value,
            OutboxEntry.provider_id == report.provider_id,
        )
    )
    if state is not None:
        return state in _DELIVERED
    parked = exists().where(
        ParkedReport.channel == ChannelName.SMS.value,
        ParkedReport.provider_id == report.provider_id,
        ParkedReport.state.in_(_DELIVERED),
    )
    return bool(await session.scalar(select(parked)))


async def _opted_in_since(session: AsyncSession, customer_id: int, moment: datetime) -> bool:
    """Whether SMS service consent was given (START) after `moment`."""
    return bool(
        await session.scalar(
            select(
                exists().where(
                    ConsentEvent.customer_id == customer_id,
                    ConsentEvent.channel == Channel.SMS.value,
                    ConsentEvent.purpose == Purpose.SERVICE.value,
                    ConsentEvent.action.in_((Action.GRANT.value, Action.CONFIRM.value)),
                    ConsentEvent.occurred_at > moment,
                )
            )
        )
    )


async def _sent_at(session: AsyncSession, provider_id: str) -> datetime | None:
    """When the SMS Twilio names went out, if it is ours: the attempt Twilio took, found by its
    own id (the message may have been retried since, and now hold another). Only the send
    itself: a staff retry records the delivery it replaced under the same id, at the time of
    the retry, which would date a late report about the old send after a START given since."""
    when: datetime | None = await session.scalar(
        select(func.max(DeliveryAttempt.at))
        .join(OutboxEntry, OutboxEntry.message_id == DeliveryAttempt.message_id)
        .where(
            DeliveryAttempt.provider_id == provider_id,  # ix_delivery_attempts_provider
            DeliveryAttempt.outcome == SENT,
            OutboxEntry.channel == ChannelName.SMS.value,
        )
    )
    return when


async def _delivered_since(
    session: AsyncSession, customer_id: int, number: str, moment: datetime
) -> bool:
    """Whether an SMS to the customer's `number` sent after `moment` was delivered (or read):
    a delivery on their timeline since then (ix_interactions_timeline: their own entries, not
    every delivery of a campaign), of the send Twilio took after `moment`."""
    delivered = Interaction.data["message_id"].as_integer()
    return bool(
        await session.scalar(
            select(
                exists().where(
                    Interaction.customer_id == customer_id,
                    Interaction.occurred_at > moment,
                    Interaction.kind == InteractionKind.DELIVERY.value,
                    Interaction.channel == ChannelName.SMS.value,
                    Interaction.data["state"].as_string().in_(_DELIVERED),
                    Message.id == delivered,
                    Message.address == number,
                    OutboxEntry.message_id == Message.id,
                    DeliveryAttempt.message_id == Message.id,
                    DeliveryAttempt.provider_id == OutboxEntry.provider_id,
                    DeliveryAttempt.outcome == SENT,
                    DeliveryAttempt.at > moment,
                )
            )
        )
    )


def _stored_number(address: str, region: str) -> str:
    """A number as the identities (and so the undeliverable marks) store it."""
    try:
        return normalise(IdentityKind.PHONE.value, address, region)
    except InvalidIdentity:  # an address kept as written (a short code's): stored so
        return address.strip()


async def _mark_undeliverable(
    unit: Unit,
    session: AsyncSession,
    customer_id: int,
    number: str,
    code: str | None,
    proof: dict[str, Any],
    sent_at: datetime | None,
) -> bool:
    key = (customer_id, Channel.SMS.value, number)
    if await session.get(Undeliverable, key) is not None:
        return False
    if sent_at is not None and await _delivered_since(session, customer_id, number, sent_at):
        # The handset took a message sent after the failed one: the failure is history.
        unit.audit("sms.undeliverable_report_stale", customer_id, proof)
        return False
    session.add(
        Undeliverable(
            customer_id=customer_id,
            channel=Channel.SMS.value,
            address=number,
            reason=f"twilio error {code}",
            # As of the failed send (when known): a message delivered after it lifts the mark,
            # one delivered before it, reported late, does not.
            at=sent_at or utcnow(),
        )
    )
    unit.audit("sms.undeliverable", customer_id, proof)
    unit.publish("contact.undeliverable", customer_id, channel=Channel.SMS.value)
    return True
