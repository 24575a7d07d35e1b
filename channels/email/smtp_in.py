"""The SMTP listener: mail delivered straight to Sastre (aiosmtpd), each message handed to a
callback that stores it.

The answer to DATA is the receipt: 250 only after the callback returned, so the message is
stored; a failure answers 451 and the sending MTA tries again later (nothing is lost, and the
dedupe key makes the second delivery one message). A callback may refuse a message for good
(`Refused`) with a 550; Sastre's stores every message it can parse, so it never does. It runs
on the app's own event loop: `listen` opens the server, `close()` on what it returns stops it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["Delivery", "InboundHandler", "Refused", "TryLater", "listen", "parse_listen"]

log = logging.getLogger(__name__)
MAX_SIZE = 32 * 1024 * 1024  # bytes: the largest message accepted (aiosmtpd's default)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the SMTP envelope says beside the message itself."""

    raw: bytes
    mail_from: str  # the envelope sender, "" for a bounce (<>)
    recipients: tuple[str, ...]
    peer: str  # the client's IP address ("" when unknown)


class Refused(Exception):
    """A message that can never be taken as it is (the sender MTA should not retry)."""


class TryLater(Exception):
    """A message stored but not done with (its answer failed): the sender MTA keeps it and
    delivers it again later, and the redelivery is recognised by its Message-ID."""


Callback = Callable[[Delivery], Awaitable[object]]


class InboundHandler:
    """aiosmtpd's handler: DATA goes to the callback, the reply says whether it is stored."""

    def __init__(self, callback: Callback) -> None:
        self._callback = callback

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode("utf-8", "surrogateescape")
        delivery = Delivery(
            raw=raw,
            mail_from=envelope.mail_from or "",
            recipients=tuple(envelope.rcpt_tos),
            peer=_host(session.peer),
        )
        try:
            await self._callback(delivery)
        except Refused as refused:
            return f"550 5.6.0 {refused}"
        except TryLater as later:
            log.warning("an e-mail from %s: %s", delivery.mail_from or "<>", later)
            return f"451 4.3.0 {later}"
        except Exception:
            log.exception("an e-mail from %s could not be stored", delivery.mail_from or "<>")
            return "451 4.3.0 Not stored, please try again later"
        return "250 2.0.0 Message stored"


def _host(peer: object) -> str:
    """The address of aiosmtpd's peer, (host, port, ...) for a TCP socket."""
    if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
        return peer[0]
    return ""


def parse_listen(value: str) -> tuple[str, int]:
    """'127.0.0.1:8025' → ('127.0.0.1', 8025); '[::1]:25' for IPv6. ValueError otherwise."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


async def listen(
    callback: Callback,
    host: str,
    port: int,
    *,
    hostname: str | None = None,
    max_size: int = MAX_SIZE,
    sock: socket.socket | None = None,
) -> asyncio.Server:
    """Start listening (port 0: any free port; read it from the server's sockets), or serve
    `sock`, a socket already bound and listening (host and port are then not used)."""
    handler = InboundHandler(callback)
    loop = asyncio.get_running_loop()
    factory = partial(
        SMTP,
        handler,
        hostname=hostname,
        data_size_limit=max_size,
        enable_SMTPUTF8=True,
        decode_data=False,
    )
    if sock is not None:
        return await loop.create_server(factory, sock=sock)
    return await loop.create_server(factory, host, port)


def bound_port(server: asyncio.Server) -> int:
    sockets: Sequence[object] = server.sockets
    return int(sockets[0].getsockname()[1])  # type: ignore[attr-defined]
