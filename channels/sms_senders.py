"""Who an incoming SMS says it is from, read from Twilio's `From` before anything is looked up.

Twilio posts every message it receives for our number, and a 4xx loses it for good (Twilio does
not post it again), so a signed message is stored whoever sent it. Not every sender is a phone
number a customer writes from, though:

* a *number* (`+12125550123`): the ordinary case; crm_core normalises it to E.164, and a number
  its tables do not know (a new range, a fictional one) is kept as written (`dialog.senders`);
* a *short code* (`22395`: 3 to 8 digits, no `+`): carriers, banks and verification services
  text from them; they are not people and seldom take replies;
* an *alphanumeric sender id* (`VERIFY`, `MyBank`): one-way by design, nothing can be sent back;
* *another channel* (`whatsapp:+12136116957`, `messenger:…`, `rcs:…`): Twilio prefixes the
  address with the channel when the same webhook is configured for WhatsApp or Messenger. That is
  not an SMS: answering it as one would send an "SMS" to `whatsapp:+1…`. Sastre has no such
  channel, so the webhook refuses it with a 400 naming `From` (Twilio's debugger shows it to the
  operator, who points that sender elsewhere) rather than filing it under the wrong channel;
* anything else (`not a number`) is nothing Twilio sends: refused the same way.

Pure: a string in, a decision with its reason out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = ["MAX_SENDER", "SenderKind", "SmsSender", "read_sender"]

# Longer than any phone number or sender id (E.164: 16 with the '+'; alphanumeric ids: 11).
MAX_SENDER: Final = 64

_CHANNEL_PREFIX: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_SHORT_CODE: Final = re.compile(r"[0-9]{3,8}")
_NUMBER: Final = re.compile(r"\+?[0-9][0-9 ().-]*")
# GSM's alphanumeric originator: at most 11 characters, letters and digits (a letter at least).
_SENDER_ID: Final = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 &._-]{1,11}")
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")


class SenderKind(StrEnum):
    NUMBER = "number"  # a phone number: normalised, answered
    SHORT_CODE = "short_code"  # stored, not answered
    ALPHANUMERIC = "alphanumeric"  # stored, not answered: it cannot be answered
    OTHER_CHANNEL = "other_channel"  # refused: not an SMS
    MALFORMED = "malformed"  # refused: nothing Twilio sends


@dataclass(frozen=True, slots=True)
class SmsSender:
    """What `From` is, the address as written (trimmed), and why it is treated so."""

    kind: SenderKind
    address: str
    reason: str

    @property
    def answerable(self) -> bool:
        """Whether the bot may answer it (a number; the number's validity is crm_core's)."""
        return self.kind is SenderKind.NUMBER

    @property
    def refused(self) -> bool:
        """Whether the webhook refuses it (a 400 naming `From`)."""
        return self.kind in (SenderKind.OTHER_CHANNEL, SenderKind.MALFORMED)


def read_sender(raw: str) -> SmsSender:
    """Classify Twilio's `From`. Decided on its shape alone: no table of numbers is consulted."""
    address = raw.strip()
    if not address or len(address) > MAX_SENDER or _CONTROL.search(address):
        return SmsSender(
            SenderKind.MALFORMED,
            address,
            f"is not a phone number, short code or sender id (1 to {MAX_SENDER} characters)",
        )
    prefix = _CHANNEL_PREFIX.match(address)
    if prefix is not None:
        channel = prefix.group(1).lower()
        return SmsSender(
            SenderKind.OTHER_CHANNEL,
            address,
            f"is a {channel} address: this webhook takes SMS and MMS only, and Sastre has no "
            f"{channel} channel; configure that sender's webhook elsewhere",
        )
    if _SHORT_CODE.fullmatch(address):
        return SmsSender(
            SenderKind.SHORT_CODE,
            address,
            "a short code (an automated service, not a person): stored, not answered",
        )
    if _NUMBER.fullmatch(address):
        return SmsSender(SenderKind.NUMBER, address, "a phone number")
    if _SENDER_ID.fullmatch(address):
        return SmsSender(
            SenderKind.ALPHANUMERIC,
            address,
            "an alphanumeric sender id (one-way: it cannot be answered): stored, not answered",
        )
    return SmsSender(
        SenderKind.MALFORMED,
        address,
        "is not a phone number, short code or sender id (up to 11 letters and digits)",
    )
