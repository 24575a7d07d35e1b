"""A bot message offering options carries their labels in its frame; any other does not."""

from __future__ import annotations

from datetime import UTC, datetime

from channels.webchat import ChatLine, history_frame, message_frame

AT = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def test_the_options_offered_are_in_the_message_frame() -> None:
    line = ChatLine("m7", "bot", "Did you mean…?", AT, ("Returns", "Exchanges"))
    assert message_frame(line)["choices"] == ["Returns", "Exchanges"]


def test_a_message_offering_nothing_has_no_choices_member() -> None:
    line = ChatLine("m8", "bot", "Hello!", AT)
    assert "choices" not in message_frame(line)
    assert "choices" not in history_frame([line])["messages"][0]
