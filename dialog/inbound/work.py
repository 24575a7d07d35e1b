"""One message on its way through a batch: waiting for it, then the turn being decided."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channels.base import ChannelName, InboundMessage
from consent.keywords import KeywordKind
from crm_core.models import IdentityKind, InteractionKind
from dialog.media import Medium
from dialog.turns import ConversationFacts, CustomerFacts, InboundResult, Reply

__all__ = ["Context", "Pending", "Work", "fingerprint", "keyword_plan"]


def keyword_plan(kind: KeywordKind) -> str:
    """What was done with a message that was a keyword (`messages.outcome`): "keyword:opt_out"."""
    return f"keyword:{kind.value}"


def fingerprint(message: InboundMessage) -> tuple[str, str, tuple[str, ...]]:
    """What tells apart two messages under one provider id: the sender, text and attachments.
    A provider's redelivery has the first delivery's; a client that used an id again for another
    message (`InboundResult.reused`) does not."""
    return message.address, message.text, tuple(message.attachments)


@dataclass(slots=True)
class Context:
    """The customer, their open conversation (if any) and whether STOP is in force here."""

    customer: CustomerFacts
    conversation: ConversationFacts | None
    revoked: bool


@dataclass(slots=True)
class Pending:
    """A message waiting for its batch, and the caller waiting for its result."""

    message: InboundMessage
    medium: Medium
    sender: str  # the normalised address: the identity to look up
    received_at: datetime
    result: asyncio.Future[InboundResult]
    # Its text was handed to the bot's read-ahead while it waited, or its batch took it.
    read_ahead: bool = False
    reading: asyncio.Future[None] | None = None  # that reading, done elsewhere, if not back yet
    # Redeliveries of this very message (its provider id) that arrived while it was handled:
    # each learns what became of it (stored and answered), or None if it failed and should be
    # tried itself.
    redelivered: list[asyncio.Future[InboundResult | None]] = field(default_factory=list)

    @property
    def kind(self) -> IdentityKind:
        return self.medium.identity

    def settle(self, result: InboundResult | BaseException) -> None:
        for again in self.redelivered:
            if again.done():
                continue
            if isinstance(result, InboundResult):
                again.set_result(result)
            elif isinstance(result, Exception):
                again.set_result(None)
            else:  # stopped (shutdown): the redelivery is not tried either
                again.set_exception(result)
        self.redelivered.clear()
        if self.result.done():  # settled already (a shutdown abandoning what its batch settled)
            return
        if isinstance(result, BaseException):
            self.result.set_exception(result)
        else:
            self.result.set_result(result)


@dataclass(slots=True)
class Work:
    """One message's turn: what it found, and what it decided to write."""

    pending: Pending
    customer: CustomerFacts
    conversation: ConversationFacts
    revoked: bool
    inbound_id: int | None = None  # None: a duplicate, already stored
    answers: int | None = None  # our message this one replies to (an e-mail's thread headers)
    replies: list[str] = field(default_factory=list)
    sent: list[tuple[str, int]] = field(default_factory=list)  # (text, message id) once stored
    handed_off: bool = False
    intent: str | None = None
    confidence: float | None = None
    plan: str | None = None  # what was done with it: stored as the message's outcome
    choices: tuple[str, ...] = ()  # offered with the last reply
    timeline: list[dict[str, Any]] = field(default_factory=list)
    conversation_changes: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False  # stored before, and still awaiting the bot: asked again
    reused: bool = False  # a duplicate by id with another text (`InboundResult.reused`)
    opened: bool = False  # this message opened the conversation: its language is only a default

    @property
    def message(self) -> InboundMessage:
        return self.pending.message

    @property
    def now(self) -> datetime:
        return self.pending.received_at

    def written(self) -> None:
        """What was decided so far is stored: what follows starts from nothing."""
        self.timeline.clear()
        self.conversation_changes.clear()

    def forget_answer(self) -> None:
        """Undo what applying an answer did to this work, to apply it again after a rollback."""
        self.written()
        self.replies, self.sent = [], []
        self.handed_off, self.intent, self.confidence = False, None, None
        self.plan, self.choices = None, ()

    def note(self, kind: InteractionKind, summary: str, actor: str, **data: Any) -> None:
        self.timeline.append(
            {
                "customer_id": self.customer.id,
                "kind": kind.value,
                "channel": self.conversation.channel,
                "summary": summary,
                "actor": actor,
                "data": data,
                "occurred_at": self.now,
                "recorded_at": self.now,
            }
        )

    def result(self) -> InboundResult:
        if self.inbound_id is None:
            return InboundResult(duplicate=True, reused=self.reused)
        channel = ChannelName(self.conversation.channel)
        return InboundResult(
            duplicate=False,
            customer_id=self.customer.id,
            conversation_id=self.conversation.id,
            message_id=self.inbound_id,
            replies=tuple(
                Reply(
                    channel,
                    self.conversation.address,
                    text,
                    id_,
                    self.choices if n == len(self.sent) - 1 else (),
                )
                for n, (text, id_) in enumerate(self.sent)
            ),
            handed_off=self.handed_off,
            intent=self.intent,
            plan=self.plan,
        )
