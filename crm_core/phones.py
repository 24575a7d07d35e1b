"""Reading a stored phone identity back: a number to text or call, or an address kept as written.

A phone identity is usually a number in E.164 (`normalise_phone` made it so). Since inbound SMS
from a short code (`22395`), an alphanumeric sender id (`ACME`) or a number the tables do not
know is stored rather than refused (`dialog.senders`), a phone identity may also be that address
exactly as the provider wrote it. Such an identity is the sender's name, not a number: it has no
country, no time zone, and nothing should be sent to it (a short code or a sender id takes no
replies). Every reader of phone identities asks here instead of parsing the value itself.

Pure: a string in, a parsed number or None out; never raises.
"""

from __future__ import annotations

import re
from typing import Final

import phonenumbers

__all__ = ["E164", "dialable", "is_dialable"]

# "+" then a country code and at most 15 digits in all (ITU-T E.164), nothing else.
E164: Final = re.compile(r"\+[1-9][0-9]{1,14}")


def dialable(value: str) -> phonenumbers.PhoneNumber | None:
    """The number a stored phone identity is, when it is one in E.164; None for an address kept
    as written (a short code, a sender id, anything not in E.164)."""
    if not E164.fullmatch(value):
        return None
    try:
        return phonenumbers.parse(value)
    except phonenumbers.NumberParseException:  # a country code no table holds
        return None


def is_dialable(value: str) -> bool:
    """Whether a message or a call can be sent to this stored phone identity."""
    return dialable(value) is not None
