"""aiosmtpd as the SMTP server at the other end: it takes what `SmtpEmail` sends, on 127.0.0.1
and a port the kernel picks (no races), and answers with programmed failures when told to.
`accepted` counts the messages taken; `keep=False` only counts them (the outbox benchmark).

The outbox benchmark measures our side, so the peer must cost little: aiosmtpd parses every
MAIL FROM and RCPT TO address afresh (defining a class each time), which was a tenth of its CPU;
here each distinct command argument is parsed once."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from functools import partial
from typing import Any, ClassVar

from aiosmtpd.smtp import SMTP, Envelope, Session
from typing_extensions import override

__all__ = ["Received", "SmtpPeer", "smtp_peer"]


@dataclass(frozen=True, slots=True)
class Received:
    mail_from: str
    recipients: tuple[str, ...]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.raw)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Smtp(SMTP):
    """aiosmtpd's server, remembering the addresses it has parsed (the same few, over and over
    in a benchmark); what it answers is unchanged."""

    _addresses: ClassVar[dict[tuple[int | None, str], Any]] = {}

    @override
    def _getaddr(self, arg: str) -> Any:
        key = (self.local_part_limit, arg)
        found = self._addresses.get(key)
        if found is None:
            if len(self._addresses) > 4096:
                self._addresses.clear()
            found = self._addresses[key] = super()._getaddr(arg)
        return found


@dataclass
class SmtpPeer:
    """What the server received, and the answers it gives next (to RCPT TO, to DATA)."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    rcpt_answers: deque[str] = field(default_factory=deque)
    data_answers: deque[str] = field(default_factory=deque)
    connections: int = 0
    accepted: int = 0
    keep: bool = True
    stall: asyncio.Event | None = None  # when given, DATA is answered only once it is set

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_answers:
            return self.rcpt_answers.popleft()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.stall is not None:
            await self.stall.wait()
        if self.data_answers:
            return self.data_answers.popleft()
        content = envelope.original_content or b""
        assert isinstance(content, bytes)
        self.accepted += 1
        if self.keep:
            self.received.append(
                Received(envelope.mail_from or "", tuple(envelope.rcpt_tos), content)
            )
        return "250 2.0.0 Queued"


@asynccontextmanager
async def smtp_peer(*, keep: bool = True) -> AsyncIterator[SmtpPeer]:
    peer = SmtpPeer(keep=keep)

    def protocol() -> SMTP:
        peer.connections += 1
        return partial(_Smtp, peer, hostname="peer.test", decode_data=False)()

    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
    peer.port = server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        server.close()
        await server.wait_closed()
