"""Acts on consent: record a statement, confirm a double opt-in, unsubscribe, change
preferences, withdraw everything at once.

The consent ledger is its own audit trail (append-only, with actor and evidence), so recording,
confirming and unsubscribing write no second entry; preference changes and withdrawing
everything are audited by `consent.preferences`. Each act reads and writes the live customer (a
merged id speaks for its survivor) in one transaction, so a check and the write it guards can
never disagree.

A marketing grant that waits for the customer's confirmation (double opt-in) asks for it: given
the deployment's `Outreach`, `do_record_consent` queues the request in the same transaction
(`sastre.operations.consent_request`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from consent.ledger import DOUBLE_OPT_IN, consent_status, current_consents, record_consent
from consent.models import ConsentEvent, ConsentState
from consent.preferences import ContactPreferences, update_preferences, withdraw_everything
from consent.types import GENERAL, Action, Channel, ConsentStatus, Purpose, Source
from crm_core.customers import get_customer
from crm_core.sqltypes import utcnow
from dialog.outbox import announce
from sastre.db import SessionMaker
from sastre.operations.consent_request import ConfirmationRequest, queue_confirmation_request
from sastre.operations.outreach import Outreach
from sastre.operations.unit import Unit, unit_of_work

__all__ = [
    "Confirmation",
    "Recorded",
    "do_confirm_consent",
    "do_record_consent",
    "do_unsubscribe",
    "do_update_preferences",
    "do_withdraw_consents",
]

CUSTOMER = "customer"  # the actor when the customer acts through a signed link


@dataclass(frozen=True, slots=True)
class Recorded:
    event: ConsentEvent
    current: list[tuple[ConsentState, ConsentEvent]]  # every state row of the customer after it
    # A grant now waiting for confirmation: the request sent for it (or why none was).
    confirmation: ConfirmationRequest | None = None


class Confirmation(StrEnum):
    CONFIRMED = "confirmed"  # this call confirmed it
    ALREADY_CONFIRMED = "already_confirmed"  # a double click, or a second tab: nothing to do
    NOTHING_PENDING = "nothing_pending"  # never asked for, or revoked since


async def do_record_consent(
    sessionmaker: SessionMaker,
    customer_id: int,
    channel: Channel,
    purpose: Purpose,
    action: Action,
    source: Source,
    *,
    actor: str,
    evidence: Mapping[str, Any],
    topic: str = GENERAL,
    occurred_at: datetime | None = None,
    outreach: Outreach | None = None,
) -> Recorded:
    """One statement in the ledger, on the live customer (a merged id speaks for its survivor).
    NothingToConfirm for a confirm with nothing pending, InvalidTopic for a malformed topic
    (`consent.ledger.record_consent`), CustomerNotFound for an unknown id. With `outreach`, a
    grant that makes a double opt-in pending queues the request to confirm it."""
    asks = outreach is not None and action is Action.GRANT and (channel, purpose) in DOUBLE_OPT_IN
    confirmation = None
    async with unit_of_work(sessionmaker, actor) as unit:
        before = None
        if asks:
            before = await consent_status(unit.session, customer_id, channel, purpose, topic)
        event = await record_consent(
            unit.session,
            customer_id,
            channel,
            purpose,
            action,
            source,
            actor=actor,
            evidence=evidence,
            topic=topic,
            occurred_at=occurred_at,
        )
        current = await current_consents(unit.session, event.customer_id)
        key = (channel.value, purpose.value, topic)
        after = next((s.status for s, _ in current if (s.channel, s.purpose, s.topic) == key), None)
        # Asked once, when the grant makes it pending: a second grant while it waits (a form
        # sent twice) would only repeat the question.
        pending = after == ConsentStatus.PENDING.value and before is not ConsentStatus.PENDING
        if outreach is not None and asks and pending:
            confirmation = await queue_confirmation_request(unit.session, event, outreach, utcnow())
            if confirmation.message_id is not None:
                unit.audit(
                    "consent.confirmation_requested",
                    event.customer_id,
                    {"event_id": event.id, **confirmation.to_json()},
                )
        unit.publish("consent.changed", event.customer_id, event_id=event.id)
    if confirmation is not None and confirmation.message_id is not None:
        announce()
    return Recorded(event, current, confirmation)


async def do_confirm_consent(
    sessionmaker: SessionMaker,
    customer_id: int,
    channel: Channel,
    *,
    evidence: Mapping[str, Any],
    topic: str = GENERAL,
) -> Confirmation:
    """The second step of double opt-in, from the link in the confirmation message. Idempotent:
    a second click (even one racing the first) finds the consent granted and changes nothing."""
    async with unit_of_work(sessionmaker, CUSTOMER) as unit:
        customer_id, status = await _marketing_status(unit, customer_id, channel, topic)
        if status is ConsentStatus.GRANTED:
            return Confirmation.ALREADY_CONFIRMED
        if status is not ConsentStatus.PENDING:
            return Confirmation.NOTHING_PENDING
        link = _Link(customer_id, channel, topic, evidence)
        await _record_by_link(unit, link, Action.CONFIRM, Source.WEB_FORM)
    return Confirmation.CONFIRMED


async def do_unsubscribe(
    sessionmaker: SessionMaker,
    customer_id: int,
    channel: Channel,
    *,
    evidence: Mapping[str, Any],
    topic: str = GENERAL,
) -> bool:
    """Revoke marketing on a channel from an unsubscribe link; True if this call revoked it.
    Idempotent: a second click records nothing more."""
    async with unit_of_work(sessionmaker, CUSTOMER) as unit:
        customer_id, status = await _marketing_status(unit, customer_id, channel, topic)
        if status is ConsentStatus.REVOKED:
            return False
        link = _Link(customer_id, channel, topic, evidence)
        await _record_by_link(unit, link, Action.REVOKE, Source.UNSUBSCRIBE_LINK)
    return True


@dataclass(frozen=True, slots=True)
class _Link:
    """A signed link the customer followed: whose, for which channel and topic, and the click."""

    customer_id: int
    channel: Channel
    topic: str
    evidence: Mapping[str, Any]


async def _marketing_status(
    unit: Unit, customer_id: int, channel: Channel, topic: str
) -> tuple[int, ConsentStatus | None]:
    """The live customer (a merged id speaks for its survivor) and their marketing consent
    (None: never stated)."""
    customer = await get_customer(unit.session, customer_id)
    status = await consent_status(unit.session, customer.id, channel, Purpose.MARKETING, topic)
    return customer.id, status


async def _record_by_link(unit: Unit, link: _Link, action: Action, source: Source) -> None:
    event = await record_consent(
        unit.session,
        link.customer_id,
        link.channel,
        Purpose.MARKETING,
        action,
        source,
        actor=CUSTOMER,
        evidence=link.evidence,
        topic=link.topic,
    )
    unit.publish("consent.changed", link.customer_id, event_id=event.id)


async def do_update_preferences(
    sessionmaker: SessionMaker,
    customer_id: int,
    changes: Mapping[str, Any],
    *,
    actor: str,
    source: Source,
    evidence: Mapping[str, Any],
    proven_channel: Channel | None = None,
) -> ContactPreferences:
    """Change preferences (InvalidPreferences names a bad field); topic changes become consent
    events (`consent.preferences.update_preferences`)."""
    async with unit_of_work(sessionmaker, actor) as unit:
        customer = await get_customer(unit.session, customer_id)
        preferences = await update_preferences(
            unit.session,
            customer.id,
            changes,
            actor=actor,
            source=source,
            evidence=evidence,
            proven_channel=proven_channel,
        )
        unit.publish("preferences.changed", customer.id)
    return preferences


async def do_withdraw_consents(
    sessionmaker: SessionMaker,
    customer_id: int,
    *,
    actor: str,
    source: Source,
    evidence: Mapping[str, Any],
) -> int:
    """Revoke marketing on every channel at once; returns how many events were recorded."""
    async with unit_of_work(sessionmaker, actor) as unit:
        customer = await get_customer(unit.session, customer_id)
        recorded = await withdraw_everything(
            unit.session, customer.id, actor=actor, source=source, evidence=evidence
        )
        unit.publish("consent.changed", customer.id)
    return recorded
