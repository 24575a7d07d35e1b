"""What of a consent event's evidence every reader may see, and what only those who may judge it.

Evidence proves consent (GDPR 7): the IP address and browser a form was sent from, the words a
customer wrote. That is personal data, needed to settle a dispute and not to plan a campaign, so
readers without the right to it see only the facts that say *what* was agreed and *how*: kept by
name (an allow-list), so evidence of a kind nobody foresaw is withheld rather than shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["SHAREABLE_EVIDENCE", "redact_evidence"]

SHAREABLE_EVIDENCE: Final = frozenset(
    {
        "wording",  # what the customer agreed to
        "version",  # which form or wording version
        "wording_version",
        "method",  # one-click, page, confirmation link
        "keyword",  # the keyword that revoked (STOP), not the message
        "confirmed_by",
        "understood_by",
        "link_channel",
        "merged_customer_id",  # a merge's event cites where it came from
        "from_event_id",
    }
)


def redact_evidence(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """The evidence without what identifies or quotes the person (IP, user agent, text, ...)."""
    return {key: value for key, value in evidence.items() if key in SHAREABLE_EVIDENCE}
