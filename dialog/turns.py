"""What the inbound path and a bot say to each other: the turn, the bot's decision, and the two
ports a bot may plug into.

A bot is one of two kinds, told apart by the port it implements (not by a flag):

* a `Brain` answers inside the turn's transaction and may read and write through its session
  (the embedded self-service: the FAQ and the rasa-sdk actions run in-process);
* a `RemoteBot` is asked over the network and gets no session (a Rasa server: its action server
  has its own connections). It is asked with no transaction open, in a task of its own, so no
  other customer's turn waits for its answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import ChannelName

__all__ = [
    "BatchBrain",
    "Bot",
    "BotTurn",
    "BotUnanswered",
    "Brain",
    "ConversationFacts",
    "CustomerFacts",
    "InboundResult",
    "RemoteBot",
    "Reply",
    "Turn",
    "respond_all",
]


@dataclass(frozen=True, slots=True)
class Reply:
    channel: ChannelName
    address: str
    text: str
    message_id: int
    # The options this reply offers ("Did you mean…?"): the text numbers them for SMS and
    # e-mail, the web chat shows them as quick-reply buttons. Empty for any other reply.
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InboundResult:
    duplicate: bool
    customer_id: int | None = None
    conversation_id: int | None = None
    message_id: int | None = None
    replies: tuple[Reply, ...] = ()
    handed_off: bool = False
    intent: str | None = None
    # What was done with the message (`BotTurn.plan`, or `keyword:<kind>` for a consent keyword);
    # None for a duplicate and for a message never put to the bot. Stored as `messages.outcome`.
    plan: str | None = None
    # A duplicate whose text is not the one stored under its provider id: the id was used again
    # for another message (a client's bug), and this one is not stored. Its channel says so.
    reused: bool = False


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """What a turn knows of the customer: read once, with the conversation, in one query."""

    id: int
    name: str | None
    language: str | None
    timezone: str | None
    tier: str
    attributes: dict[str, Any]  # those a turn reads (`dialog.handoff.TURN_ATTRIBUTES`) it has


@dataclass(frozen=True, slots=True)
class ConversationFacts:
    id: int
    state: str
    channel: str  # where the customer wrote last: replies go there
    address: str
    language: str
    failed_turns: int
    flags: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Turn:
    """What the bot is told about one customer message.

    `text` is the part of the message the bot is given: the whole of it up to the medium's
    bound (`dialog.media`), so a 20-page e-mail is stored whole and the bot reads its start."""

    customer: CustomerFacts
    conversation: ConversationFacts
    text: str
    language: str
    timezone: str
    received_at: datetime
    # False when the medium lets anyone write as this address and the channel could not prove
    # the sender owns it (a forged From): actions that reveal account data (orders, profile,
    # the preferences link) answer generically, and the attempt goes on the timeline.
    sender_proven: bool = True
    # How many files came with it (MMS media, e-mail attachments): a photo with no words is
    # for a person to look at, not a question the bot failed to understand.
    attachments: int = 0
    message_id: int | None = None  # the stored inbound message: what a choice offered labels


@dataclass(slots=True)
class BotTurn:
    """What the bot decided: its replies, whether it understood, and whether to hand off."""

    replies: list[str] = field(default_factory=list)
    understood: bool = True
    handoff: str | None = None  # the reason: customer_asked, not_understood, complaint, cmv, ...
    intent: str | None = None
    confidence: float | None = None
    language: str | None = None
    complaint: bool = False
    flags: dict[str, Any] | None = None  # the conversation's flags after this turn; None: as were
    # What the bot did, machine-readable: faq:<entry-id>, action:<action>, small_talk:<intent>,
    # choices:<option>|<option>..., confirm:<action>, rephrase, handoff:<reason>.
    plan: str | None = None
    choices: tuple[str, ...] = ()  # the labels offered with the last reply, if it offers any


@runtime_checkable
class Brain(Protocol):
    """A bot that answers inside the turn's transaction, through its session."""

    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn: ...


@runtime_checkable
class BatchBrain(Protocol):
    """A `Brain` that can answer a batch's turns (each another customer's) in one call, each as
    `respond` would, sharing the work they have in common (reading every message at once)."""

    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn: ...

    async def respond_all(self, session: AsyncSession, turns: Sequence[Turn]) -> list[BotTurn]: ...


async def respond_all(brain: Brain, session: AsyncSession, turns: Sequence[Turn]) -> list[BotTurn]:
    """The brain's answer to each turn, in order: in one call when it can."""
    if isinstance(brain, BatchBrain):
        return await brain.respond_all(session, turns)
    return [await brain.respond(session, turn) for turn in turns]


@runtime_checkable
class RemoteBot(Protocol):
    """A bot outside the database: asked with no transaction open, and given no session."""

    async def ask(self, turn: Turn) -> BotTurn: ...


Bot = Brain | RemoteBot


class BotUnanswered(Exception):
    """A bot outside the database gave no answer within the inbound path's bound. The message
    is stored and still awaits it: the provider's redelivery asks again (`dialog.inbound`)."""
