"""The second step of double opt-in, asked for: the message that asks the customer to confirm.

A marketing grant on SMS or e-mail is pending until the customer confirms it
(`consent.ledger.DOUBLE_OPT_IN`); the customer is asked in the same transaction that records the
grant, through the outbox like every message we send. By SMS they are asked to reply YES (the
keyword path, `consent.replies`, confirms every pending opt-in on the channel); by e-mail they
get the signed /c/{token} link (`sastre.web.public` confirms it). The request carries no
advertising, in the customer's language.

It is a service message, and asks the contact policy like any: quiet hours defer it to the
morning; a STOP on the channel, a bounced address or no address at all leave the grant pending
with nothing sent, and say why. So does a channel no sender is configured for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from consent.models import ConsentEvent
from consent.policy import Outcome, decide
from consent.types import GENERAL, Channel, Purpose
from crm_core.customers import get_customer
from dialog.media import by_consent_channel
from sastre.operations.outreach import (
    Outbound,
    Outreach,
    address_on,
    customer_language,
    queue_outbound,
)
from wording import message_ids, translate

__all__ = ["ConfirmationRequest", "queue_confirmation_request"]

AUTHOR = "system"


@dataclass(frozen=True, slots=True)
class ConfirmationRequest:
    """What became of the request: queued (its message and when it goes), or why not."""

    channel: str
    message_id: int | None = None
    due_at: datetime | None = None
    reason: str | None = None  # when nothing was queued: no_sender, no_address, the policy's
    explanation: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "queued": self.message_id is not None,
            "channel": self.channel,
            "message_id": self.message_id,
            "due_at": None if self.due_at is None else self.due_at.isoformat(),
            "reason": self.reason,
            "explanation": self.explanation,
        }


def _what(language: str, topic: str) -> str:
    """What the customer is asked to confirm: marketing at large, or one topic's messages."""
    if topic == GENERAL:
        return translate(language, "marketing.all")
    key = "topic." + topic  # the default topics have names in the catalogue
    # A topic added in the settings is shown as it is named.
    name = translate(language, key) if key in message_ids() else topic
    return translate(language, "marketing.topic", topic=name)


def _wording(
    channel: Channel, language: str, event: ConsentEvent, outreach: Outreach
) -> tuple[str, dict[str, Any]]:
    what = _what(language, event.topic)
    if channel is Channel.EMAIL:
        link = outreach.confirm_url(event.customer_id, channel, event.topic)
        text = translate(
            language, "optin.request.email.body", brand=outreach.brand, what=what, link=link
        )
        subject = translate(language, "optin.request.email.subject", brand=outreach.brand)
        return text, {"subject": subject}
    return translate(language, "optin.request.sms", brand=outreach.brand, what=what), {}


async def queue_confirmation_request(
    session: AsyncSession, event: ConsentEvent, outreach: Outreach, now: datetime
) -> ConfirmationRequest:
    """Queue the request to confirm the pending grant `event` (see the module's note); the
    caller announces the outbox row after the commit."""
    channel = Channel(event.channel)
    medium = by_consent_channel(channel).name
    if medium not in outreach.sendable:
        explanation = f"no sender is configured for {channel.value}"
        return ConfirmationRequest(channel.value, reason="no_sender", explanation=explanation)
    state = await outreach.contact_state(session, event.customer_id, now)
    decision = decide(state, Purpose.SERVICE, channel, now, rules=outreach.rules)
    if decision.outcome is Outcome.DENY:
        return ConfirmationRequest(
            channel.value, reason=decision.reason.value, explanation=decision.explanation
        )
    address = await address_on(session, event.customer_id, channel)
    if address is None:  # the policy denies an unreachable channel: this is a race's guard
        return ConfirmationRequest(channel.value, reason="no_address")
    customer = await get_customer(session, event.customer_id)
    language = await customer_language(session, customer, outreach.default_language)
    text, options = _wording(channel, language, event, outreach)
    due = decision.defer_until if decision.outcome is Outcome.DEFER else None
    message = await queue_outbound(
        session,
        Outbound(
            customer_id=event.customer_id,
            medium=medium,
            address=address,
            text=text,
            purpose=Purpose.SERVICE.value,
            author=AUTHOR,
            reference=f"optin-{event.id}",
            language=language,
            due_at=due,
            options=options,
        ),
        now,
    )
    return ConfirmationRequest(channel.value, message.id, due or now)
