"""The fake sender keeps the port's contract: an id per send, failures as DeliveryFailed."""

from __future__ import annotations

import pytest

from channels.base import ChannelName, DeliveryFailed, OutboundMessage
from channels.fake import FakeSender

MESSAGE = OutboundMessage(ChannelName.SMS, "+14155552671", "hi", reference="sastre-1")


async def test_a_send_is_recorded_with_a_fresh_provider_id() -> None:
    sender = FakeSender()
    first, second = await sender.send(MESSAGE), await sender.send(MESSAGE)
    assert first != second
    assert [record.provider_id for record in sender.sent] == [first, second]


async def test_a_programmed_failure_is_raised_once() -> None:
    sender = FakeSender()
    sender.fail_next(DeliveryFailed("busy", retryable=True, code="429", retry_after=3.0))
    with pytest.raises(DeliveryFailed) as raised:
        await sender.send(MESSAGE)
    assert (raised.value.code, raised.value.retry_after, raised.value.retryable) == (
        "429",
        3.0,
        True,
    )
    assert await sender.send(MESSAGE)
    assert sender.calls == 2


async def test_close_is_recorded() -> None:
    sender = FakeSender()
    await sender.close()
    assert sender.closed
