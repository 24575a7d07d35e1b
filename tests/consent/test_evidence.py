"""Evidence redaction: what every reader may see of a consent's proof."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from consent.evidence import SHAREABLE_EVIDENCE, redact_evidence


def test_addresses_agents_and_words_are_withheld() -> None:
    evidence = {
        "wording": "Yes, e-mail me offers",
        "method": "one-click",
        "ip": "203.0.113.9",
        "user_agent": "MailClient/1.0",
        "text": "STOP please, I am Ana from Calle Mayor 3",
        "recorded_via": {"ip": "198.51.100.7", "user_agent": "curl"},
    }
    assert redact_evidence(evidence) == {"wording": "Yes, e-mail me offers", "method": "one-click"}


@given(st.dictionaries(st.text(max_size=20), st.integers()))
def test_only_named_facts_survive_whatever_the_evidence(evidence: dict[str, Any]) -> None:
    redacted = redact_evidence(evidence)
    assert set(redacted) <= SHAREABLE_EVIDENCE
    assert all(evidence[key] == value for key, value in redacted.items())
