"""One raw e-mail in, from either door (the webhook or the SMTP listener), to where it belongs.

    parse (never fails) → a delivery report? the bounce is recorded, nothing else
                        → the sender (From, else the envelope's) → proven? (DKIM, trusted relay)
                        → the inbound path: stored, answered unless it is an auto-reply or bulk
                        → proven, from a person: the address's bounce marks are lifted

A message we could parse at all is stored, whatever is wrong with it: one with no sender (no
From, no envelope sender) or a sender that is no e-mail address is filed under one lead for such
mail (`UNATTRIBUTED`, an address in a reserved domain, marked undeliverable so nothing is ever
sent to it), flagged (`sender`, `unanswered` in its metadata, on the timeline for staff) and not
answered. Refusing it would lose it: a relay told 4xx resends it for ever, an MTA told 5xx
bounces it to a null sender, that is, nowhere.

The caller acknowledges only after `take` returned: the message is stored by then. Parsing,
DKIM's DNS look-ups and writing attachments run off the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from channels.base import InboundMessage, storable
from channels.email import (
    AttachmentStore,
    ParsedEmail,
    Proof,
    null_sender,
    parse_email,
    prove_sender,
    sender_of,
    to_inbound,
    told_apart,
)
from channels.email.proof import DnsFunc
from crm_core.identities import InvalidIdentity, normalise
from crm_core.models import IdentityKind
from dialog.inbound import InboundProcessor
from dialog.senders import SENDER, UNANSWERED
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.operations.email import (
    do_file_unattributed,
    do_lift_bounce_marks,
    do_record_email_bounces,
)

__all__ = ["UNATTRIBUTED", "EmailIntake", "Intake", "NoSender", "intake_for"]

# The lead mail with no usable sender is filed under (RFC 2606: .example receives no mail).
UNATTRIBUTED: Final = "no-sender@unattributed.example"


class NoSender(Exception):
    """Kept for callers that catch it: `take` files such a message instead of raising."""


def _printable(text: str) -> str:
    """A sender as staff may read it: undecodable bytes and control characters replaced."""
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates become "?"
    return "".join(c if c.isprintable() else "\ufffd" for c in text)[:200]


def _unattributed(message: InboundMessage, sender: str, why: str) -> InboundMessage:
    return replace(
        message,
        address=UNATTRIBUTED,
        auto=True,  # nobody to answer
        metadata={**message.metadata, SENDER: sender, UNANSWERED: why},
    )


@dataclass(frozen=True, slots=True)
class Intake:
    """What became of one message."""

    kind: str  # "message", "duplicate", "bounce"
    message_id: int | None = None  # the stored message
    auto: str | None = None  # why it will not be answered
    proven: bool = False
    malformed: bool = False
    unattributed: bool = False  # filed under UNATTRIBUTED: no usable sender


@dataclass(frozen=True, slots=True)
class EmailIntake:
    inbound: InboundProcessor
    sessionmaker: SessionMaker
    reader: SessionMaker  # reads that must not take SQLite's write lock (`sastre.db`)
    region: str
    trusted_relays: tuple[str, ...] = ()
    store: AttachmentStore | None = None
    dnsfunc: DnsFunc | None = None  # DKIM's key look-ups; None: the real DNS

    async def take(
        self, raw: bytes, *, envelope_from: str | None = None, relayed: bool = True
    ) -> Intake:
        """Store (and answer) one raw message. `relayed`: it came from a trusted relay, whose
        Authentication-Results may prove its sender (see `sastre.email_listener.deliver`)."""
        relays = self.trusted_relays if relayed else ()
        parsed, proof = await asyncio.to_thread(self._read, raw, envelope_from, relays)
        if parsed.bounces:
            await do_record_email_bounces(
                self.sessionmaker,
                parsed.bounces,
                message_id=parsed.bounced_message_id,
                region=self.region,
                reported_by=storable(parsed.sender) if parsed.sender else None,
            )
            return Intake("bounce", auto=parsed.auto, malformed=parsed.malformed)
        address = sender_of(parsed, envelope_from)
        message = await asyncio.to_thread(
            to_inbound, parsed, proof, address=address or UNATTRIBUTED, store=self.store
        )
        why = self._unusable(address)
        if why is not None:
            message = _unattributed(message, _printable(address or ""), why)
        try:
            result = await self.inbound.handle(message)
        except ValueError as error:  # an address the inbound path refuses after all
            why = f"the sender is not an e-mail address: {_printable(str(error))}"
            message = _unattributed(message, _printable(address or ""), why)
            result = await self.inbound.handle(message)
        if result.reused:  # another message is stored under its Message-ID: kept all the same
            message = told_apart(message)
            result = await self.inbound.handle(message)
        unattributed = message.address == UNATTRIBUTED
        if unattributed and result.customer_id is not None and not result.duplicate:
            await do_file_unattributed(self.sessionmaker, result.customer_id, UNATTRIBUTED)
        if proof.proven and address and not unattributed and not parsed.auto:
            # A person wrote from that mailbox: whatever bounced there before, it works now.
            await do_lift_bounce_marks(
                self.sessionmaker,
                self.reader,
                address,
                region=self.region,
                message_id=result.message_id,
            )
        return Intake(
            "duplicate" if result.duplicate else "message",
            message_id=result.message_id,
            auto=parsed.auto or (why if unattributed else None),
            proven=proof.proven,
            malformed=parsed.malformed or unattributed,
            unattributed=unattributed,
        )

    def _unusable(self, address: str | None) -> str | None:
        """Why a message cannot be filed under its sender's address, or None."""
        if address is None:
            return "no From address and no envelope sender: filed as unattributed, not answered"
        try:
            normalise(IdentityKind.EMAIL.value, address, self.region)
        except InvalidIdentity as invalid:
            reason = _printable(invalid.reason)
            return f"the sender is not an e-mail address ({reason}): filed as unattributed"
        return None

    def _read(
        self, raw: bytes, envelope_from: str | None, relays: tuple[str, ...]
    ) -> tuple[ParsedEmail, Proof]:
        parsed = parse_email(raw, keep_attachments=self.store is not None)
        if parsed.auto is None and (why := null_sender(envelope_from)) is not None:
            parsed = replace(parsed, auto=why)
        sender = sender_of(parsed, envelope_from)
        if parsed.bounces or sender is None:
            return parsed, Proof(False, "not checked")
        # The proof is about the From header: an envelope sender proves nothing.
        proof = prove_sender(raw, parsed.sender, trusted_relays=relays, dnsfunc=self.dnsfunc)
        return parsed, proof


def intake_for(
    settings: Settings,
    inbound: InboundProcessor,
    sessionmaker: SessionMaker,
    reader: SessionMaker,
    *,
    dnsfunc: DnsFunc | None = None,
) -> EmailIntake:
    directory = settings.email_attachments_dir.strip()
    return EmailIntake(
        inbound=inbound,
        sessionmaker=sessionmaker,
        reader=reader,
        region=settings.default_region,
        trusted_relays=tuple(settings.email_trusted_relay_list),
        store=AttachmentStore(Path(directory)) if directory else None,
        dnsfunc=dnsfunc,
    )
