"""A parsed e-mail as the `InboundMessage` the dialog layer takes, and its attachments' bytes
kept or dropped.

The stored text is the whole body; the bot and the keywords read the newest reply (`bot_text`),
or the subject when the body says nothing ("unsubscribe" in the subject of an empty mail, as a
List-Unsubscribe mailto sends it). Attachments are kept as metadata, one JSON object per
attachment (name, type, size, and the file it was stored in when bytes are kept).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from channels.base import ChannelName, InboundMessage
from channels.email.parse import Attachment, ParsedEmail
from channels.email.proof import Proof

__all__ = [
    "AttachmentStore",
    "attachment_entry",
    "null_sender",
    "sender_of",
    "to_inbound",
    "told_apart",
]


@dataclass(frozen=True, slots=True)
class AttachmentStore:
    """A directory holding attachments' bytes, one file per content (named by its SHA-256:
    the same file sent twice is stored once)."""

    root: Path

    def put(self, content: bytes) -> str:
        digest = hashlib.sha256(content).hexdigest()
        target = self.root / digest[:2] / digest
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            # A file of this writer's own (two messages may carry the same logo at once),
            # renamed into place whole: never a half-written file under the final name, and
            # a rename onto a twin another writer just put there replaces it with the same bytes.
            descriptor, partial = tempfile.mkstemp(dir=target.parent, prefix=f"{digest}.")
            try:
                with os.fdopen(descriptor, "wb") as file:
                    file.write(content)
                os.replace(partial, target)
            except BaseException:
                Path(partial).unlink(missing_ok=True)
                raise
        return f"{digest[:2]}/{digest}"


def attachment_entry(attachment: Attachment, stored: str | None = None) -> str:
    entry: dict[str, object] = {
        "name": attachment.name,
        "type": attachment.content_type,
        "size": attachment.size,
    }
    if stored is not None:
        entry["stored"] = stored
    return json.dumps(entry, ensure_ascii=False, sort_keys=True)


def null_sender(envelope_from: str | None) -> str | None:
    """Why mail sent from the null envelope sender (`MAIL FROM:<>`) is not answered, or None
    when it was not (or the door does not know the envelope). RFC 5321 4.5.5: bounces,
    read receipts and auto-replies are sent from <> so that nothing answers them; a plain-text
    bounce carries no other sign of what it is."""
    if envelope_from is not None and envelope_from.strip() in ("", "<>"):
        return "null envelope sender"
    return None


def sender_of(parsed: ParsedEmail, envelope_from: str | None = None) -> str | None:
    """The address the message is filed under: From, else the SMTP envelope's sender."""
    if parsed.sender:
        return parsed.sender
    if envelope_from and "@" in envelope_from:
        return envelope_from.strip().strip("<>")
    return None


def to_inbound(
    parsed: ParsedEmail,
    proof: Proof,
    *,
    address: str,
    received_at: datetime | None = None,
    store: AttachmentStore | None = None,
) -> InboundMessage:
    attachments = tuple(
        attachment_entry(
            a, store.put(a.content) if store is not None and a.content is not None else None
        )
        for a in parsed.attachments
    )
    metadata: dict[str, str] = proof.as_metadata()
    if parsed.message_id:
        metadata["message_id"] = parsed.message_id
    if parsed.in_reply_to:
        metadata["in_reply_to"] = parsed.in_reply_to
    if parsed.references:
        metadata["references"] = " ".join(parsed.references)
    if parsed.auto:
        metadata["auto"] = parsed.auto
    if parsed.defects:
        metadata["malformed"] = "; ".join(parsed.defects)
    if parsed.from_html:
        metadata["from_html"] = "yes"
    bot_text = parsed.reply if parsed.reply.strip() else (parsed.subject or "")
    return InboundMessage(
        channel=ChannelName.EMAIL,
        address=address,
        text=parsed.text if parsed.text.strip() else (parsed.subject or ""),
        provider_id=parsed.dedupe_key,
        attachments=attachments,
        received_at=received_at,
        verified=proof.proven,
        subject=parsed.subject,
        thread_key=parsed.thread_key,
        auto=parsed.auto is not None,
        metadata=metadata,
        bot_text=bot_text,
    )


def told_apart(message: InboundMessage) -> InboundMessage:
    """An e-mail whose Message-ID is one a different message stored already has (a mailer that
    gives every message one id, a forger), under a key of its own: the digest of that id with
    its sender, text and attachments (what tells two messages apart). Its own redeliveries get
    the same key, so each is still one message."""
    told = [message.provider_id, message.address, message.text, list(message.attachments)]
    key = json.dumps(told, ensure_ascii=False).encode("utf-8", "surrogateescape")
    return replace(message, provider_id="reused:sha256:" + hashlib.sha256(key).hexdigest())
