"""The most a provider's fake takes on this machine, with no database: the outbox benchmark's
ceilings.

Two figures per fake, both with as many sends in flight as the workers have:
* `library`: the client library alone (the twilio client's `create_async` through its
  `AsyncTwilioHttpClient`; aiosmtplib's `sendmail` of a message written out once, over as many
  connections as our adapter opens), so what the fake and the library allow;
* `adapter`: our own `Sender` (`TwilioSms`, `SmtpEmail`), so what is left for the outbox.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from email.message import EmailMessage
from typing import Any

import aiosmtplib
from aiosmtplib.email import flatten_message
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from bench.peers import ACCOUNT_SID, AUTH_TOKEN, Peer
from channels.base import ChannelName, OutboundMessage, Sender

__all__ = ["EMAIL_FROM", "SMS_FROM", "adapter_rate", "email_for", "library_rate", "sms_for"]

SMS_FROM = "+14155550100"
EMAIL_FROM = "Bench <hola@tienda.example>"


def sms_for(i: int) -> OutboundMessage:
    return OutboundMessage(ChannelName.SMS, "+14155550199", f"message {i}", reference=f"b-{i}")


def email_for(i: int) -> OutboundMessage:
    return OutboundMessage(
        ChannelName.EMAIL,
        "cliente@example.org",
        f"message {i}",
        reference=f"b-{i}",
        subject="Bench",
    )


async def _rate(n: int, in_flight: int, call: Callable[[int], Awaitable[object]]) -> float:
    """Messages per second for n calls, `in_flight` at a time (a few first, to warm up)."""
    for i in range(min(in_flight, 50)):
        await call(-1 - i)
    numbers = iter(range(n))

    async def lane() -> None:
        for i in numbers:
            await call(i)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    return n / (time.perf_counter() - started)


async def adapter_rate(senders: Mapping[ChannelName, Sender], n: int, in_flight: int) -> float:
    """Our senders alone; with several channels, message i goes to the i-th in turn (mixed)."""
    channels = list(senders)

    async def call(i: int) -> object:
        channel = channels[i % len(channels)]
        make = sms_for if channel is ChannelName.SMS else email_for
        return await senders[channel].send(make(i))

    return await _rate(n, in_flight, call)


async def _twilio_rate(peer: Peer, n: int, in_flight: int) -> float:
    http = AsyncTwilioHttpClient()
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http)
    client.edge = None
    client.region = None
    client.api.base_url = peer.address
    messages = client.api.v2010.accounts(ACCOUNT_SID).messages

    async def call(i: int) -> object:
        return await messages.create_async(to="+14155550199", body=f"message {i}", from_=SMS_FROM)

    try:
        with warnings.catch_warnings():  # the library's BasicAuth, which aiohttp deprecates
            warnings.simplefilter("ignore", DeprecationWarning)
            return await _rate(n, in_flight, call)
    finally:
        await http.close()


async def _smtp_rate(peer: Peer, n: int, connections: int) -> float:
    idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
    opened: list[aiosmtplib.SMTP] = []
    for _ in range(connections):
        client = aiosmtplib.SMTP(hostname=peer.host, port=peer.port, start_tls=False)
        await client.connect()
        opened.append(client)
        idle.put_nowait(client)

    # The message is written out once: only its Message-ID changes from one send to the next.
    email = EmailMessage()
    email["From"] = EMAIL_FROM
    email["To"] = "cliente@example.org"
    email["Subject"] = "Bench"
    email["Message-ID"] = "<b-MESSAGE@tienda.example>"
    email.set_content("message MESSAGE")
    raw = flatten_message(email)

    async def call(i: int) -> object:
        client = await idle.get()
        try:
            return await client.sendmail(
                "hola@tienda.example",
                ["cliente@example.org"],
                raw.replace(b"MESSAGE", str(i).encode()),
            )
        finally:
            idle.put_nowait(client)

    try:
        return await _rate(n, connections, call)
    finally:
        for client in opened:
            await client.quit()


async def library_rate(peer: Peer, n: int, in_flight: int, **options: Any) -> float:
    """The fake driven by its client library alone; SMTP takes `connections`."""
    if peer.kind == "twilio":
        return await _twilio_rate(peer, n, in_flight)
    return await _smtp_rate(peer, n, int(options.get("connections", in_flight)))
