"""The span of the day in which company-initiated contact is allowed (`ContactHours`).

It has a module of its own, importing only the standard library, so that the settings can check
an operator's contact-hours override at start-up without loading the contact policy and, through
the policy's tiers, the customer models: every command reads the settings, few decide contacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

__all__ = ["MIDNIGHT", "ContactHours", "hm", "require_naive"]

MIDNIGHT = time(0)


def require_naive(value: time, what: str) -> None:
    if value.tzinfo is not None:
        raise ValueError(f"{what} is a local wall time and takes no time zone, got {value!r}")


def hm(value: time) -> str:
    """09:00, or 09:00:30 when the seconds matter."""
    return value.strftime("%H:%M:%S" if value.second or value.microsecond else "%H:%M")


@dataclass(frozen=True, slots=True)
class ContactHours:
    """The span of the day in which company-initiated contact is allowed, local time: from
    `start` to `end`. The rest of the day is quiet hours.

    `end` 00:00 means the midnight that ends the day; otherwise `start` must precede `end`.
    """

    start: time = time(8)
    end: time = time(21)

    def __post_init__(self) -> None:
        require_naive(self.start, "contact hours start")
        require_naive(self.end, "contact hours end")
        if self.end != MIDNIGHT and self.end <= self.start:
            raise ValueError(
                f"contact hours must not cross midnight: {hm(self.start)}-{hm(self.end)}"
            )
