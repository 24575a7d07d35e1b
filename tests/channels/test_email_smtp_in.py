"""The SMTP listener: 250 only once the callback stored the message, 451 when it failed or is
not done with (the sending MTA retries), 550 when the message can never be taken."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiosmtplib
import pytest

from channels.email.smtp_in import Delivery, Refused, TryLater, bound_port, listen, parse_listen

MESSAGE = b"From: jane.doe@example.com\r\nTo: hola@tienda.example\r\nSubject: hi\r\n\r\nhello\r\n"


async def test_a_message_is_acknowledged_after_the_callback_returned() -> None:
    stored: list[Delivery] = []

    async def store(delivery: Delivery) -> None:
        stored.append(delivery)

    server = await listen(store, "127.0.0.1", 0)
    try:
        errors, answer = await aiosmtplib.send(
            MESSAGE,
            sender="bounces@example.com",
            recipients=["hola@tienda.example"],
            hostname="127.0.0.1",
            port=bound_port(server),
        )
    finally:
        server.close()
        await server.wait_closed()
    assert errors == {}
    assert "stored" in answer
    (delivery,) = stored
    assert delivery.raw.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n")
    assert delivery.mail_from == "bounces@example.com"
    assert delivery.recipients == ("hola@tienda.example",)


async def refusal_by(callback: Callable[[Delivery], Awaitable[None]]) -> aiosmtplib.SMTPDataError:
    """What a listener whose callback raises answers the sending MTA's DATA."""
    server = await listen(callback, "127.0.0.1", 0)
    try:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await aiosmtplib.send(
                MESSAGE,
                sender="a@example.com",
                recipients=["hola@tienda.example"],
                hostname="127.0.0.1",
                port=bound_port(server),
            )
    finally:
        server.close()
        await server.wait_closed()
    return refused.value


async def test_a_failed_store_is_a_temporary_failure() -> None:
    async def fail(delivery: Delivery) -> None:
        raise RuntimeError("database is down")

    assert (await refusal_by(fail)).code == 451


async def test_a_message_not_done_with_is_a_temporary_failure_saying_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def later(delivery: Delivery) -> None:
        raise TryLater("the bot did not answer within 15 s")

    deferred = await refusal_by(later)
    assert deferred.code == 451
    assert "did not answer" in deferred.message
    said = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert said
    assert not [r for r in said if r.exc_info]  # a warning, not a traceback


async def test_a_refused_message_is_a_permanent_failure() -> None:
    async def refuse(delivery: Delivery) -> None:
        raise Refused("no sender")

    refused = await refusal_by(refuse)
    assert refused.code == 550
    assert "no sender" in refused.message


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8025") == ("127.0.0.1", 8025)
    assert parse_listen("[::1]:25") == ("::1", 25)
    for wrong in ("8025", "host:", ":25", "host:port", "host:99999"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen(wrong)
