"""What every company-initiated message needs, whichever act sends it: where it may go, in
which words, and its row in the outbox.

`Outreach` is the deployment's part (from the settings): the channels a sender is configured
for, the contact policy's rules and the brand, language and public address the words and links
are made with. A message on a channel nobody can send on would wait in the outbox for ever, so
the acts offer the contact policy only the channels in `Outreach.sendable`, and only those that
take a text that long (`dialog.media.Medium.max_send`); `carriers` says which, or why none.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import ChannelName
from consent.models import Undeliverable
from consent.policy import ContactHours, ContactState, PolicyRules
from consent.preferences import load_preferences
from consent.snapshot import load_contact_state
from consent.tokens import ConfirmLink, LinkSigner, UnsubscribeLink
from consent.types import Channel
from crm_core.customers import CustomerNotFound, get_customer
from crm_core.models import Customer, Identity, IdentityKind, InteractionKind
from crm_core.phones import is_dialable
from crm_core.timeline import add_interaction
from dialog.media import by_consent_channel, media
from dialog.models import (
    OPEN_STATES,
    Conversation,
    Direction,
    Message,
    conversations_table,
    is_open,
)
from dialog.outbox import enqueue, outbox_row
from sastre.config import Settings
from wording import pick_language

__all__ = [
    "NoSuchRecipient",
    "Outreach",
    "TextTooLong",
    "address_on",
    "carriers",
    "customer_language",
    "hold_customer",
    "offered",
    "queue_outbound",
    "sendable_channels",
]


class TextTooLong(ValueError):
    """The text is longer than the channel (or every channel it could go on) takes."""

    field = "text"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoSuchRecipient(LookupError):
    """A message addressed to a customer id nobody has."""

    field = "customer_id"

    def __init__(self, customer_id: int) -> None:
        super().__init__(f"no customer {customer_id}")
        self.reason = (
            f"no customer has the id {customer_id}: it was never used, or the customer was erased"
        )


def sendable_channels(settings: Settings) -> frozenset[ChannelName]:
    """The media a worker of this deployment has a sender for (`sastre.channels_setup`: a
    medium's sender is built when these settings are present)."""
    configured = {
        ChannelName.SMS: settings.sms_enabled,
        ChannelName.EMAIL: settings.email_enabled,
    }
    return frozenset(name for name, on in configured.items() if on)


@dataclass(frozen=True, slots=True)
class Outreach:
    sendable: frozenset[ChannelName]
    default_timezone: str = "UTC"
    rules: PolicyRules = field(default_factory=PolicyRules)
    quiet_overrides: Mapping[str, ContactHours] = field(default_factory=dict)
    brand: str = "Sastre"
    default_language: str = "en"
    public_url: str = "http://127.0.0.1:8080"  # where the customer's links point
    secret: bytes = b""  # signs the links (consent.tokens)
    postal_address: str | None = None  # marketing e-mail's footer; None: none may be sent

    @classmethod
    def from_settings(cls, settings: Settings) -> Outreach:
        return cls(
            sendable=sendable_channels(settings),
            default_timezone=settings.default_timezone,
            rules=settings.policy_rules,
            quiet_overrides=settings.quiet_hour_overrides,
            brand=settings.brand_name,
            default_language=settings.default_language,
            public_url=settings.external_url.rstrip("/"),
            secret=settings.secret(),
            postal_address=settings.postal_address,
        )

    async def contact_state(
        self, session: AsyncSession, customer_id: int, at: datetime
    ) -> ContactState:
        """What the contact policy reads about the customer at `at`, with this site's zone and
        quiet hours."""
        return await load_contact_state(
            session,
            customer_id,
            at=at,
            default_timezone=self.default_timezone,
            quiet_overrides=self.quiet_overrides,
        )

    def unsubscribe_url(self, customer_id: int, channel: Channel, topic: str = "") -> str:
        """The one-click link (RFC 8058) `sastre.web.public` serves at /u/{token}."""
        token = LinkSigner(self.secret).unsubscribe_token(
            UnsubscribeLink(customer_id, channel, topic)
        )
        return f"{self.public_url}/u/{token}"

    def confirm_url(self, customer_id: int, channel: Channel, topic: str = "") -> str:
        """The double opt-in confirmation link `sastre.web.public` serves at /c/{token}."""
        token = LinkSigner(self.secret).confirm_token(ConfirmLink(customer_id, channel, topic))
        return f"{self.public_url}/c/{token}"


def _limit_words(channel: Channel, limit: int) -> str:
    return f"{channel.value} takes at most {limit:,}"


def carriers(
    length: int, requested: Channel | None, sendable: Collection[ChannelName]
) -> tuple[tuple[Channel, ...], str | None, str | None]:
    """The channels a message of `length` characters may be offered to the policy on.

    Returns (channels, refusal, reason): channels empty when none will do, with `refusal`
    "no_sender" (nobody can send there: a conflict with the deployment, not the request) or
    "text_too_long" (the request's text), and a sentence naming the channel or limits."""
    if requested is not None:
        medium = by_consent_channel(requested)
        if medium.name not in sendable:
            return (), "no_sender", f"no sender is configured for {requested.value}"
        if medium.max_send is not None and length > medium.max_send:
            words = _limit_words(requested, medium.max_send)
            return (), "text_too_long", f"the text is {length:,} characters; {words}"
        return (requested,), None, None
    possible = [m for m in media() if m.name in sendable]
    if not possible:
        return (), "no_sender", "no channel has a sender configured"
    fitting = tuple(m.consent for m in possible if m.max_send is None or length <= m.max_send)
    if not fitting:
        limits = "; ".join(_limit_words(m.consent, m.max_send or 0) for m in possible)
        return (), "text_too_long", f"the text is {length:,} characters; {limits}"
    return fitting, None, None


def offered(
    state: ContactState, rules: PolicyRules, channels: Collection[Channel]
) -> tuple[ContactState, PolicyRules]:
    """The policy's inputs with only `channels` to choose from, in the customer's order of
    preference and then the rules' (the policy judges what it is offered)."""
    return (
        replace(
            state, preferred_channels=tuple(c for c in state.preferred_channels if c in channels)
        ),
        replace(rules, channel_order=tuple(c for c in rules.channel_order if c in channels)),
    )


async def customer_language(session: AsyncSession, customer: Customer, default: str) -> str:
    """The language the customer reads: chosen in the preference centre, else the one we know
    them in, else the deployment's."""
    preferences = await load_preferences(session, customer.id)
    return pick_language(preferences.language, customer.language, default)


async def address_on(session: AsyncSession, customer_id: int, channel: Channel) -> str | None:
    """The customer's address on `channel`: a verified one first, then the oldest, leaving out
    those marked undeliverable on it (a bounce, a number Twilio cannot reach: the contact
    policy counts the channel undeliverable only once every address is). A phone identity kept
    as written (a short code's, a sender id's) is not sent to."""
    kind = by_consent_channel(channel).identity
    marked = (
        select(Undeliverable.address)
        .where(
            Undeliverable.customer_id == customer_id,
            Undeliverable.channel == channel.value,
            Undeliverable.address == Identity.value,
        )
        .exists()
    )
    query = (
        select(Identity.value)
        .where(Identity.customer_id == customer_id, Identity.kind == kind.value, ~marked)
        .order_by(Identity.verified.desc(), Identity.created_at)
    )
    for address in await session.scalars(query):
        if kind is not IdentityKind.PHONE or is_dialable(address):
            return str(address)
    return None


# At most this many merges are followed to the survivor (get_customer's own bound).
_MERGE_HOPS = 16
# PostgreSQL: a transaction-scoped lock per customer, released by the commit or rollback.
_HOLD = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


async def hold_customer(session: AsyncSession, customer_id: int) -> Customer:
    """The live customer (following merges), held until the transaction ends.

    Every act that decides on the contact policy and then writes what the next decision counts
    (a queued marketing message is a contact made) holds the customer first: two staff sends at
    once would otherwise both read the caps before either wrote, and both pass. On PostgreSQL
    the hold is an advisory lock per customer, not a lock on their row: only these acts take
    it, so an inbound turn (which holds its conversation and may update the customer's row)
    never waits on it nor deadlocks with it. SQLite needs no lock: a writer's `BEGIN IMMEDIATE`
    already serialises write transactions. Raises NoSuchRecipient."""
    postgres = session.get_bind().dialect.name == "postgresql"
    asked = customer_id
    for _ in range(_MERGE_HOPS):
        try:
            customer = await get_customer(session, customer_id)
        except CustomerNotFound:
            raise NoSuchRecipient(asked) from None
        if not postgres:
            return customer
        await session.execute(_HOLD, {"key": f"contact:{customer.id}"})
        # As it is now that we hold it: merged or erased while we waited?
        held = await session.scalar(
            select(Customer)
            .where(Customer.id == customer.id)
            .execution_options(populate_existing=True)
        )
        if held is None:
            raise NoSuchRecipient(asked)
        if held.merged_into_id is None:
            return held
        customer_id = held.merged_into_id  # hold the survivor instead
    raise NoSuchRecipient(asked)


def _open_conversation(
    dialect: str, customer_id: int, channel: str, address: str, language: str
) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING on the one-open-conversation-per-customer index: when
    another transaction (an inbound message, another send) opens the customer's conversation
    first, ours is skipped rather than a unique violation that aborts the act."""
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        dialect_insert(conversations_table)
        .values(customer_id=customer_id, channel=channel, address=address, language=language)
        .on_conflict_do_nothing(
            index_elements=[conversations_table.c.customer_id],
            index_where=text(OPEN_STATES),  # the partial unique index's own predicate
        )
        .returning(conversations_table.c.id)
    )


async def _conversation(
    session: AsyncSession, customer_id: int, channel: str, address: str, language: str
) -> int:
    """The customer's open conversation, opened now if they have none, held in `language`:
    their answer that reads as either language ("ok") is answered in it."""
    query = select(Conversation.id).where(
        Conversation.customer_id == customer_id,
        is_open(Conversation.state),
    )
    dialect = session.get_bind().dialect.name
    for _ in range(3):  # another round only if the one we lost to was resolved in between
        found = await session.scalar(query)
        if found is not None:
            return int(found)
        opening = _open_conversation(dialect, customer_id, channel, address, language)
        opened = await session.scalar(opening)
        if opened is not None:
            return int(opened)
        # Someone else opened it first; it is committed now, so the next SELECT sees it.
    raise RuntimeError(f"customer {customer_id}'s conversation keeps opening and closing")


@dataclass(frozen=True, slots=True)
class Outbound:
    """One company-initiated message, ready for its row."""

    customer_id: int
    medium: ChannelName
    address: str
    text: str
    purpose: str
    author: str
    reference: str  # unique among our outbound messages: what the Message's provider_id holds
    language: str  # the customer's (`customer_language`): a conversation this opens is in it
    due_at: datetime | None = None  # None: now
    options: dict[str, Any] = field(default_factory=dict)  # e-mail's subject, links, threading


async def queue_outbound(session: AsyncSession, outbound: Outbound, now: datetime) -> Message:
    """The message, its outbox row and its timeline entry, in the caller's transaction (the
    caller announces the row after the commit)."""
    conversation_id = await _conversation(
        session, outbound.customer_id, outbound.medium.value, outbound.address, outbound.language
    )
    message = Message(
        conversation_id=conversation_id,
        customer_id=outbound.customer_id,
        channel=outbound.medium.value,
        direction=Direction.OUT.value,
        provider_id=outbound.reference,
        address=outbound.address,
        text=outbound.text,
        author=outbound.author,
    )
    session.add(message)
    await session.flush()
    row = outbox_row(
        message.id,
        outbound.medium.value,
        now,
        purpose=outbound.purpose,
        due_at=outbound.due_at,
        options=outbound.options,
    )
    await enqueue(session, [row])
    await add_interaction(
        session,
        outbound.customer_id,
        InteractionKind.MESSAGE_OUT,
        outbound.text,
        channel=outbound.medium.value,
        actor=outbound.author,
        data={"message_id": message.id, "conversation_id": conversation_id},
        flush=False,
    )
    return message
