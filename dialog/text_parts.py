"""A text longer than a medium sends at once, in parts that each fit (`Medium.max_send`).

Twilio refuses an SMS body over 1,600 characters (error 21617, for good), and an FAQ answer may
be longer. Each part is cut where a reader would pause: at the last paragraph break that
fits, else the last line break, else the last sentence's end, else the last space; a word
longer than a whole part (a URL, say) is cut where the part is full. A break in the first half
of a part is passed over for the next kind down, so no part ends up a few words long.
"""

from __future__ import annotations

import re

__all__ = ["text_parts"]

# Where a part may end, best first: the part ends before the match (a sentence, after its mark).
_BREAKS = (
    re.compile(r"\n[ \t]*\n"),
    re.compile(r"\n"),
    re.compile(r"(?<=[.!?…])\s"),
    re.compile(r"\s"),
)


def text_parts(text: str, limit: int) -> list[str]:
    """`text`, stripped, in parts of at most `limit` characters, in order (one part when it
    fits; none when it is blank). Whitespace at a cut is dropped; nothing else is."""
    if limit < 1:
        raise ValueError(f"a part holds at least one character, not {limit}")
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = _cut(rest, limit)
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts


def _cut(text: str, limit: int) -> int:
    """Where the first part of `text` (longer than `limit`) ends."""
    window = text[: limit + 1]  # a break just after the limit still ends a part that fits
    for pattern in _BREAKS:
        ends = [match.start() for match in pattern.finditer(window)]
        fitting = [end for end in ends if limit // 2 < end <= limit]
        if fitting:
            return fitting[-1]
    return limit
