"""Staff send a message, or send one that did not arrive again: both through the outbox, never
directly.

Nothing company-initiated skips the contact policy: `do_send_message` asks
`consent.policy.decide` inside the act's transaction (so a STOP committed a moment before is
seen), queues on `allow`, queues for `defer_until` on `defer`, and refuses on `deny` with the
decision's reason; `do_retry_message` asks again, the same way, before a failed or undelivered
message is queued again, as a new delivery. The one message that asks no policy is a keyword's
own answer (the STOP confirmation, purpose `compliance`): it is sent whatever consent says, its
retry too. The policy is offered only channels a sender is configured for and that take a text
that long (`outreach.carriers`): a message nobody can send is refused now, not left queued for
ever. The worker checks consent once more when it sends. A marketing message is a contact made
(`consent.models.ContactMade`, dated when it is due to go) as soon as it is queued, so the next
decision's frequency caps count it.

An e-mail gets a subject (the staff's, else "Re:" the thread it continues, else "A message from
<brand>" in the customer's language); marketing e-mail gets the signed one-click unsubscribe
link (`/u/{token}`) for its List-Unsubscribe headers, and its text ends with a line saying how
to unsubscribe and a line with the sender's postal address (`SASTRE_POSTAL_ADDRESS`: CAN-SPAM
requires one in commercial mail), in the customer's language. Without that setting marketing
e-mail is refused, never sent without it. The sender makes the HTML part from the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import ChannelName
from consent.models import ContactMade
from consent.policy import Decision, Outcome, Reason, decide
from consent.types import Channel, Purpose
from crm_core.models import Customer, InteractionKind
from crm_core.sqltypes import utcnow
from crm_core.timeline import add_interaction
from dialog.media import by_consent_channel, medium
from dialog.models import Direction, Message
from dialog.outbox import DeliveryState, announce, through_outbox
from dialog.outbox.models import DeliveryAttempt, OutboxEntry
from dialog.outbox.models import Purpose as SendPurpose
from sastre.db import SessionMaker
from sastre.operations.deliverability import is_marked
from sastre.operations.outreach import (
    Outbound,
    Outreach,
    TextTooLong,
    address_on,
    carriers,
    customer_language,
    hold_customer,
    offered,
    queue_outbound,
)
from sastre.operations.unit import unit_of_work
from wording import translate

__all__ = [
    "MessageNotFound",
    "NotRetryable",
    "Queued",
    "Refused",
    "do_retry_message",
    "do_send_message",
]

# How far back a staff e-mail looks for the thread it continues (the newest first).
_THREAD_LOOKBACK = 20
# What staff may send again: a message the worker gave up on (`failed`) or one the carrier or
# the mail server could not deliver (`undelivered`: most carrier failures, every bounce). Not one
# still on its way, nor one a provider took: the customer would have it twice.
_RETRYABLE: Final = frozenset({DeliveryState.FAILED.value, DeliveryState.UNDELIVERED.value})
# The delivery attempt that closes a delivery staff started again (see `_restart`).
_RETRIED: Final = "retried"


class Refused(Exception):
    """The contact policy said no (or there is nowhere to send it)."""

    def __init__(self, reason: str, explanation: str, decision: Decision | None = None) -> None:
        super().__init__(explanation)
        self.reason, self.explanation, self.decision = reason, explanation, decision


class NotRetryable(Exception):
    """Only a failed or undelivered message can be sent again."""


class MessageNotFound(LookupError):
    """No outbound message has that id."""


@dataclass(frozen=True, slots=True)
class Queued:
    message_id: int
    channel: str
    due_at: datetime
    decision: dict[str, Any]


def _carriers(text: str, channel: Channel | None, outreach: Outreach) -> tuple[Channel, ...]:
    channels, refusal, reason = carriers(len(text), channel, outreach.sendable)
    if refusal == "text_too_long":
        raise TextTooLong(reason or "the text is too long")
    if refusal is not None:
        raise Refused(refusal, reason or refusal)
    return channels


async def _thread(session: Any, conversation_customer: int) -> dict[str, Any]:
    """The e-mail thread a staff message continues: the threading our last answer by e-mail
    in the customer's open conversation carried ("Re:" their subject, In-Reply-To, References),
    or nothing."""
    rows = await session.execute(
        select(OutboxEntry.options)
        .join(Message, Message.id == OutboxEntry.message_id)
        .where(
            Message.customer_id == conversation_customer,
            Message.channel == ChannelName.EMAIL.value,
            Message.direction == Direction.OUT.value,
        )
        .order_by(Message.id.desc())
        .limit(_THREAD_LOOKBACK)
    )
    for (options,) in rows:
        if options and options.get("in_reply_to"):
            keep = ("subject", "in_reply_to", "references")
            return {name: options[name] for name in keep if name in options}
    return {}


async def _email_options(
    session: Any,
    customer: Customer,
    purpose: Purpose,
    subject: str | None,
    outreach: Outreach,
) -> tuple[dict[str, Any], str | None]:
    """An e-mail's options (subject, threading, unsubscribe link) and, for marketing, the line
    its text ends with."""
    language = await customer_language(session, customer, outreach.default_language)
    options: dict[str, Any] = {}
    if subject is None and purpose is Purpose.SERVICE:
        options = await _thread(session, customer.id)
    if subject is not None:
        options["subject"] = subject
    options.setdefault(
        "subject", translate(language, "email.subject.default", brand=outreach.brand)
    )
    footer = None
    if purpose is Purpose.MARKETING:
        address = _postal_address(outreach)
        link = outreach.unsubscribe_url(customer.id, Channel.EMAIL)
        options["unsubscribe_url"] = link
        footer = "\n".join(
            (
                translate(language, "email.unsubscribe", brand=outreach.brand, link=link),
                translate(language, "email.postal_address", brand=outreach.brand, address=address),
            )
        )
    return options, footer


def _postal_address(outreach: Outreach) -> str:
    """The postal address marketing e-mail carries; Refused without one: commercial mail
    without it breaks CAN-SPAM, so a deployment that has not set it sends none."""
    if outreach.postal_address is None:
        raise Refused(
            "no_postal_address",
            "marketing e-mail must carry the sender's postal address: set SASTRE_POSTAL_ADDRESS",
        )
    return outreach.postal_address


async def do_send_message(
    sessionmaker: SessionMaker,
    *,
    customer_id: int,
    text: str,
    purpose: Purpose,
    channel: Channel | None,
    actor: str,
    outreach: Outreach,
    subject: str | None = None,
) -> Queued:
    """Queue a staff message after the contact policy allows (or defers) it. Raises Refused
    (the policy's no, or no sender for the channel), TextTooLong, NoSuchRecipient. `subject`
    is an e-mail's; a message that goes by another channel has none."""
    now = utcnow()
    candidates = _carriers(text, channel, outreach)
    async with unit_of_work(sessionmaker, actor) as unit:
        session = unit.session
        # Held till the commit: the caps this decision reads count what it queues (see
        # hold_customer), so sends to one customer at once take turns.
        customer = await hold_customer(session, customer_id)
        state = await outreach.contact_state(session, customer.id, now)
        state, rules = offered(state, outreach.rules, candidates)
        decision = decide(state, purpose, channel, now, rules=rules)
        if decision.outcome is Outcome.DENY or decision.channel is None:
            raise Refused(decision.reason.value, decision.explanation, decision)
        address = await address_on(session, customer.id, decision.channel)
        if address is None:
            raise Refused("no_address", f"no address on {decision.channel.value}", decision)
        medium = by_consent_channel(decision.channel).name
        if not through_outbox(medium) or medium is ChannelName.VOICE:
            raise Refused("not_sendable", f"staff messages do not go out by {medium.value}")
        options: dict[str, Any] = {}
        if medium is ChannelName.EMAIL:
            options, footer = await _email_options(session, customer, purpose, subject, outreach)
            if footer:
                text = f"{text}\n\n-- \n{footer}"
        due = decision.defer_until if decision.outcome is Outcome.DEFER else None
        language = await customer_language(session, customer, outreach.default_language)
        message = await queue_outbound(
            session,
            Outbound(
                customer_id=customer.id,
                medium=medium,
                address=address,
                text=text,
                purpose=purpose.value,
                author=actor,
                reference=f"staff-{now.timestamp()}-{customer.id}",
                language=language,
                due_at=due,
                options=options,
            ),
            now,
        )
        if purpose is Purpose.MARKETING:
            session.add(
                ContactMade(
                    customer_id=customer.id,
                    channel=decision.channel.value,
                    purpose=purpose.value,
                    reference=f"message:{message.id}",
                    at=due or now,
                )
            )
        unit.audit(
            "message.queued",
            customer.id,
            {"message_id": message.id, "decision": decision.to_json()},
        )
        unit.publish("message.queued", customer.id, message_id=message.id)
        queued = Queued(message.id, medium.value, due or now, decision.to_json())
    announce()
    return queued


async def do_retry_message(
    sessionmaker: SessionMaker, message_id: int, *, actor: str, outreach: Outreach
) -> Queued:
    """Queue a failed or undelivered message again, as a new delivery (`_restart`), once the
    contact policy allows (now) or defers it (then); a STOP confirmation asks no policy
    (`_retry_decision`). Raises MessageNotFound, NotRetryable, and Refused with the policy's
    reason (a STOP, a revoked consent, an address marked undeliverable since) or when no sender
    is configured for it. The worker checks consent again before it sends."""
    now = utcnow()
    async with unit_of_work(sessionmaker, actor) as unit:
        session = unit.session
        message = await session.get(Message, message_id)
        if message is None:
            raise MessageNotFound(f"no outbound message {message_id}")
        # The customer first, as a send holds them: this retry and a send to them at the same
        # time must not both pass the caps.
        await hold_customer(session, message.customer_id)
        entry = await session.get(OutboxEntry, message_id, with_for_update=True)
        if entry is None:
            raise MessageNotFound(f"no outbound message {message_id}")
        if entry.state not in _RETRYABLE:
            raise NotRetryable(
                f"message {message_id} is {entry.state}: only a failed or undelivered one is "
                "sent again"
            )
        channel = medium(message.channel).consent
        _carriers(message.text, channel, outreach)
        reference = f"message:{message_id}"
        # The attempt that did not arrive reached nobody: it no longer counts against the caps
        # (and would otherwise defer its own retry); the retry is counted when it is due.
        await session.execute(delete(ContactMade).where(ContactMade.reference == reference))
        decision = await _retry_decision(session, message, entry.purpose, channel, now, outreach)
        due = decision.defer_until if decision.outcome is Outcome.DEFER else None
        _restart(session, entry, due or now, actor, now)
        # On the customer's timeline beside the states it moved through: who sent it again.
        await add_interaction(
            session,
            message.customer_id,
            InteractionKind.DELIVERY,
            "queued: sent again",
            channel=message.channel,
            actor=actor,
            data={"message_id": message_id, "state": DeliveryState.QUEUED.value, "retry": True},
            occurred_at=now,
            flush=False,
        )
        if entry.purpose == Purpose.MARKETING.value:
            session.add(
                ContactMade(
                    customer_id=message.customer_id,
                    channel=channel.value,
                    purpose=entry.purpose,
                    reference=reference,
                    at=due or now,
                )
            )
        unit.audit(
            "message.retried",
            message.customer_id,
            {"message_id": message_id, "decision": decision.to_json()},
        )
        queued = Queued(message_id, message.channel, due or now, decision.to_json())
    announce()
    return queued


async def _retry_decision(
    session: AsyncSession,
    message: Message,
    purpose: str,
    channel: Channel,
    now: datetime,
    outreach: Outreach,
) -> Decision:
    """Whether (and when) a message may go again; Refused when it may not.

    A STOP confirmation (purpose `compliance`) asks no policy: the law has it sent whatever
    consent says, as its first attempt was, and the STOP it confirms must not be what stops it.
    It goes only while it is still the answer to the customer's latest keyword there
    (`_still_the_answer`). Anything else asks as a new send would; and as a retry goes to the
    address the message went to, that address must not be marked undeliverable either (the
    policy judges the channel, which another address of the customer keeps reachable)."""
    if purpose == SendPurpose.COMPLIANCE:
        await _still_the_answer(session, message)
        return _unconditional(channel)
    wanted = Purpose(purpose)
    if wanted is Purpose.MARKETING and channel is Channel.EMAIL:
        _postal_address(outreach)  # as a new send is: no marketing e-mail goes without it
    state = await outreach.contact_state(session, message.customer_id, now)
    decision = decide(state, wanted, channel, now, rules=outreach.rules)
    if decision.outcome is Outcome.DENY:
        raise Refused(decision.reason.value, decision.explanation, decision)
    if await is_marked(session, channel, message.address):
        raise Refused(
            Reason.UNDELIVERABLE.value,
            f"{message.address}, where this message went, is marked undeliverable on "
            f"{channel.value}: send a new message to reach the customer elsewhere",
        )
    return decision


async def _still_the_answer(session: AsyncSession, message: Message) -> None:
    """Refused when the customer has sent a keyword on this channel since the one this message
    answers (or since it was written, when it answers none): after STOP, START and STOP again
    (with its own confirmation), the first confirmation is nobody's to get, and "you are
    unsubscribed" after START is wrong."""
    later = await session.scalar(
        select(Message.id)
        .where(
            Message.customer_id == message.customer_id,
            Message.channel == message.channel,
            Message.direction == Direction.IN.value,
            Message.outcome.like("keyword:%"),
            Message.id > (message.in_reply_to or message.id),
        )
        .limit(1)
    )
    if later is not None:
        raise Refused(
            "superseded",
            f"the customer has sent another keyword on {message.channel} since (message "
            f"{later}): this answer is no longer the one to send",
        )


def _unconditional(channel: Channel) -> Decision:
    """The decision a keyword's own answer is sent on: allowed, by no rule of the policy."""
    explanation = "a keyword's own answer (the STOP confirmation) is sent whatever consent says"
    return Decision(Outcome.ALLOW, channel, Reason.OK, None, explanation, ())


def _restart(
    session: AsyncSession, entry: OutboxEntry, due: datetime, actor: str, now: datetime
) -> None:
    """A staff decision to try again: a new delivery, not a provider's report going back.

    The delivery it replaces is kept among the message's attempts (`retried`: how it ended, its
    error, its provider id, and who started it again). Its provider id leaves the row: reports
    are matched by provider id, so a late one about the old delivery then matches nothing and
    changes nothing. Kept, it could move the new delivery (to `undelivered` while a worker sends
    it, whose new provider id was then never saved). The new delivery is numbered
    (`delivery` in its options): the worker gives it a reference of its own, so an e-mail sent
    again has a new Message-ID and a bounce of the old one is not taken for one of the new."""
    ended = entry.state if entry.error is None else f"{entry.state}: {entry.error}"
    session.add(
        DeliveryAttempt(
            message_id=entry.message_id,
            worker=actor[:64],  # who started the new delivery: no worker did
            outcome=_RETRIED,
            code=entry.error_code,
            reason=ended,
            provider_id=entry.provider_id,
            at=now,
        )
    )
    entry.options = {**entry.options, "delivery": int(entry.options.get("delivery", 0)) + 1}
    entry.state, entry.due_at, entry.attempts = DeliveryState.QUEUED.value, due, 0
    entry.provider_id = entry.error_code = entry.error = entry.claimed_by = None
    # Queued again now: a revocation before the retry (a STOP the policy saw undone by a
    # START) is no reason for the claim to refuse it (`dialog.outbox.queue._consented`).
    entry.created_at = entry.updated_at = now
