"""What a mail server's refusal says about an address, and whether a delivery report is about a
message we sent. Pure functions, each with its reason; `sastre.operations.email` acts on them.

One table for both ways a server says "no": a delivery status report (RFC 3464) that arrives by
mail, and an SMTP server's immediate answer to our RCPT or DATA. Only statuses that are about the
recipient's address itself mark it undeliverable (RFC 3463 X.1.x "addressing status", plus
5.2.1 "mailbox disabled", and 5.4.1/5.4.4 when the domain cannot be reached or, at Microsoft
365, knows no such recipient): the mailbox or its domain does not exist, is malformed, moved, or
accepts no mail. Any other 5.x.x (5.7.1 refused as spam, 5.2.2 mailbox full, 5.3.4 too big) fails
that message, not the address: the next message may well arrive. 5.1.7/5.1.8 are about *our*
sender address and say nothing about theirs.

A report arrives at the inbound address, where anyone can write: `From: MAILER-DAEMON` proves
nothing. A report is believed only when the message it returns carries one of our Message-IDs
(only the recipient's mail system ever saw it) and its Final-Recipient or Original-Recipient is
the address we sent that message to. Anything else is noted for staff and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # the sender imports this module; the parser's libraries stay unloaded there
    from channels.email.parse import Bounce

__all__ = [
    "ADDRESS_STATUSES",
    "AddressVerdict",
    "ReportVerdict",
    "address_verdict",
    "believe_report",
    "smtp_code",
]

_ENHANCED: Final = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")

# RFC 3463 / the IANA registry: permanent statuses that are about the recipient's address.
ADDRESS_STATUSES: Final[dict[str, str]] = {
    "5.1.1": "the mailbox does not exist",
    "5.1.2": "the recipient's mail domain does not exist or accepts no mail",
    "5.1.3": "the address is not a valid mailbox address",
    "5.1.6": "the mailbox has moved and no forwarding address is known",
    "5.1.10": "the recipient's domain accepts no mail (null MX) or the address is unknown",
    "5.2.1": "the mailbox is disabled and accepts no mail",
    # Routing statuses that are about the recipient's domain, or, at Microsoft 365 (which
    # answers unknown recipients "550 5.4.1 Recipient address rejected: Access denied"), about
    # the mailbox itself.
    "5.4.1": "the recipient's domain does not know the address, or its mail host never answers",
    "5.4.4": "the recipient's domain cannot be routed to",
}


@dataclass(frozen=True, slots=True)
class AddressVerdict:
    undeliverable: bool  # stop choosing e-mail for this address
    reason: str


def address_verdict(status: str | None) -> AddressVerdict:
    """Does this status (an enhanced code "5.1.1", or a bare SMTP code) make the address
    undeliverable? See the module's note for the table."""
    found = _ENHANCED.match(status or "")
    if found is None:
        return AddressVerdict(False, f"no enhanced status code in {status!r}")
    code = ".".join(str(int(part)) for part in found.groups())
    known = ADDRESS_STATUSES.get(code)
    if known is not None:
        return AddressVerdict(True, f"{code}: {known}")
    if code.startswith("5.1.7") or code.startswith("5.1.8"):
        return AddressVerdict(False, f"{code} is about our sender address, not the recipient's")
    if code.startswith("5."):
        return AddressVerdict(False, f"{code} fails the message, not the address")
    return AddressVerdict(False, f"{code} is not a permanent failure")


def smtp_code(code: int, message: str) -> str:
    """The code to keep for an SMTP answer: its enhanced status (RFC 2034: the text of the reply
    starts with it) when it agrees with the reply code's class, else the reply code itself."""
    found = _ENHANCED.match(message or "")
    if found is not None and found.group(1) == str(code)[:1]:
        return ".".join(str(int(part)) for part in found.groups())
    return str(code)


@dataclass(frozen=True, slots=True)
class ReportVerdict:
    believed: bool  # the report is about a message we sent to this recipient
    reason: str


def _folded(address: str | None) -> str:
    # lower(), not casefold(): casefold makes faß.example fass.example, another domain, and a
    # report about our mail to one was believed for the other.
    return (address or "").strip().strip("<>").strip().lower()


def believe_report(bounce: Bounce, *, about: str | None, sent_to: Collection[str]) -> ReportVerdict:
    """Is this recipient's report about one of our messages, sent to that recipient?

    `about` is the Message-ID the report returns (None: it names none); `sent_to` the addresses
    our outbox sent a message with that Message-ID to (empty: we never sent it)."""
    if not about:
        return ReportVerdict(False, "the report does not name the message it is about")
    if not sent_to:
        return ReportVerdict(False, f"the report is about <{about}>, which we never sent")
    ours = {_folded(address) for address in sent_to}
    named = {_folded(bounce.recipient), _folded(bounce.original_recipient)} - {""}
    if not named & ours:
        return ReportVerdict(
            False, f"we sent <{about}> to another address, not to {bounce.recipient}"
        )
    return ReportVerdict(True, f"about our message <{about}> to {bounce.recipient}")
