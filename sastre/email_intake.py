"""One raw e-mail in, from either door (the webhook or the SMTP listener), to where it belongs.

    parse (never fails) → a delivery report? the bounce is recorded, nothing else
                        → the sender (From, else the envelope's) → proven? (DKIM, trusted relay)
                        → the inbound path: stored, answered unless it is an auto-reply or bulk

The caller acknowledges only after `take` returned: the message is stored by then. Parsing,
DKIM's DNS look-ups and writing attachments run off the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from channels.email import (
    AttachmentStore,
    ParsedEmail,
    Proof,
    parse_email,
    prove_sender,
    sender_of,
    to_inbound,
)
from channels.email.proof import DnsFunc
from dialog.inbound import InboundProcessor
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.operations.email import do_record_email_bounces

__all__ = ["EmailIntake", "Intake", "NoSender", "intake_for"]


class NoSender(Exception):
    """A message with no address to file it under (no From, no envelope sender)."""


@dataclass(frozen=True, slots=True)
class Intake:
    """What became of one message."""

    kind: str  # "message", "duplicate", "bounce"
    message_id: int | None = None  # the stored message
    auto: str | None = None  # why it will not be answered
    proven: bool = False
    malformed: bool = False


@dataclass(frozen=True, slots=True)
class EmailIntake:
    inbound: InboundProcessor
    sessionmaker: SessionMaker
    region: str
    trusted_relays: tuple[str, ...] = ()
    store: AttachmentStore | None = None
    dnsfunc: DnsFunc | None = None  # DKIM's key look-ups; None: the real DNS

    async def take(self, raw: bytes, *, envelope_from: str | None = None) -> Intake:
        parsed, proof = await asyncio.to_thread(self._read, raw, envelope_from)
        if parsed.bounces:
            await do_record_email_bounces(
                self.sessionmaker,
                parsed.bounces,
                message_id=parsed.bounced_message_id,
                region=self.region,
                reported_by=parsed.sender,
            )
            return Intake("bounce", auto=parsed.auto, malformed=parsed.malformed)
        address = sender_of(parsed, envelope_from)
        if address is None:
            raise NoSender("the message has no From address and no envelope sender")
        message = await asyncio.to_thread(
            to_inbound, parsed, proof, address=address, store=self.store
        )
        try:
            result = await self.inbound.handle(message)
        except ValueError as error:  # InvalidIdentity: an address no customer can have
            raise NoSender(f"the sender {address!r} is not an e-mail address: {error}") from error
        return Intake(
            "duplicate" if result.duplicate else "message",
            message_id=result.message_id,
            auto=parsed.auto,
            proven=proof.proven,
            malformed=parsed.malformed,
        )

    def _read(self, raw: bytes, envelope_from: str | None) -> tuple[ParsedEmail, Proof]:
        parsed = parse_email(raw, keep_attachments=self.store is not None)
        sender = sender_of(parsed, envelope_from)
        if parsed.bounces or sender is None:
            return parsed, Proof(False, "not checked")
        # The proof is about the From header: an envelope sender proves nothing.
        proof = prove_sender(
            raw, parsed.sender, trusted_relays=self.trusted_relays, dnsfunc=self.dnsfunc
        )
        return parsed, proof


def intake_for(
    settings: Settings,
    inbound: InboundProcessor,
    sessionmaker: SessionMaker,
    *,
    dnsfunc: DnsFunc | None = None,
) -> EmailIntake:
    directory = settings.email_attachments_dir.strip()
    return EmailIntake(
        inbound=inbound,
        sessionmaker=sessionmaker,
        region=settings.default_region,
        trusted_relays=tuple(settings.email_trusted_relay_list),
        store=AttachmentStore(Path(directory)) if directory else None,
        dnsfunc=dnsfunc,
    )
