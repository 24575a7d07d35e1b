"""New web chat visitors and leads counted per client address."""

from __future__ import annotations

from sastre.web.chat_limits import ChatLimits


async def test_a_new_visitor_over_the_limit_is_refused_with_the_limit_and_a_wait() -> None:
    limits = ChatLimits(new_visitors_per_minute=2, new_leads_per_hour=100)
    assert await limits.new_visitor("203.0.113.5") is None
    assert await limits.new_visitor("203.0.113.5") is None
    refusal = await limits.new_visitor("203.0.113.5")
    assert refusal is not None
    assert (refusal.code, refusal.limit) == ("too_many_chats", 2)
    assert 1 <= refusal.retry_after <= 60


async def test_each_address_has_its_own_count() -> None:
    limits = ChatLimits(new_visitors_per_minute=1, new_leads_per_hour=1)
    assert await limits.new_visitor("203.0.113.5") is None
    assert await limits.new_visitor("198.51.100.7") is None
    assert await limits.new_lead("203.0.113.5") is None  # leads are counted apart from visitors


async def test_an_ipv6_subscriber_cannot_escape_by_changing_address() -> None:
    limits = ChatLimits(new_visitors_per_minute=1, new_leads_per_hour=1)
    assert await limits.new_lead("2001:db8:1:2::1") is None
    refusal = await limits.new_lead("2001:db8:1:2::2")
    assert refusal is not None
    assert (refusal.code, refusal.limit) == ("too_many_leads", 1)
