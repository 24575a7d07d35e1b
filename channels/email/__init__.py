"""E-mail in and out: parsing a raw message (`parse`), proving its sender (`proof`), turning it
into an `InboundMessage` (`inbound`), the SMTP listener (`smtp_in`) and the SMTP sender (`send`).
Only this package imports aiosmtplib, aiosmtpd, dkimpy and the mail parsing libraries."""

from channels.email.inbound import (
    AttachmentStore,
    null_sender,
    sender_of,
    to_inbound,
    told_apart,
)
from channels.email.parse import Attachment, Bounce, ParsedEmail, parse_email
from channels.email.proof import Proof, prove_sender, prove_sender_async
from channels.email.send import SmtpEmail, build_message
from channels.email.smtp_in import Delivery, Refused, TryLater, listen, parse_listen

__all__ = [
    "Attachment",
    "AttachmentStore",
    "Bounce",
    "Delivery",
    "ParsedEmail",
    "Proof",
    "Refused",
    "SmtpEmail",
    "TryLater",
    "build_message",
    "listen",
    "null_sender",
    "parse_email",
    "parse_listen",
    "prove_sender",
    "prove_sender_async",
    "sender_of",
    "to_inbound",
    "told_apart",
]
