"""aiosmtpd as the SMTP server at the other end: it takes what `SmtpEmail` sends, on 127.0.0.1
and a port the kernel picks (no races), and answers with programmed failures when told to.
`accepted` counts the messages taken; `keep=False` only counts them (the outbox benchmark).
With `tls` it speaks STARTTLS (and refuses mail before it) or TLS from the first byte, with the
tests' own certificate (`TLS_CA` issued it), and takes a login once the connection is encrypted.

The outbox benchmark measures our side, so the peer must cost little: aiosmtpd parses every
MAIL FROM and RCPT TO address afresh (defining a class each time), which was a tenth of its CPU;
here each distinct command argument is parsed once."""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from typing_extensions import override

__all__ = ["TLS_CA", "Received", "SmtpPeer", "smtp_peer"]

_TLS = Path(__file__).parents[1] / "channels" / "fixtures" / "email" / "tls"
TLS_CA = str(_TLS / "ca.pem")  # the authority that issued the peer's certificate


@dataclass(frozen=True, slots=True)
class Received:
    mail_from: str
    recipients: tuple[str, ...]
    raw: bytes
    encrypted: bool = False  # the message came over TLS

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
    logins: list[tuple[str, str]] = field(default_factory=list)  # (user, password) it accepted

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
            encrypted = server.transport is not None and bool(
                server.transport.get_extra_info("ssl_object")
            )
            self.received.append(
                Received(envelope.mail_from or "", tuple(envelope.rcpt_tos), content, encrypted)
            )
        return "250 2.0.0 Queued"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """Any login is taken (aiosmtpd offers AUTH only over TLS), and remembered."""
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        self.logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=True)


def _server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(_TLS / "server.pem", _TLS / "server.key")
    return context


@asynccontextmanager
async def smtp_peer(
    *,
    keep: bool = True,
    tls: Literal["none", "starttls", "ssl"] = "none",
    smtputf8: bool = True,
) -> AsyncIterator[SmtpPeer]:
    """`smtputf8=False`: a server that does not offer SMTPUTF8 (non-ASCII mailboxes)."""
    peer = SmtpPeer(keep=keep)
    context = _server_context() if tls != "none" else None
    options: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
    if tls == "starttls":
        options |= {"tls_context": context, "require_starttls": True}
    if tls != "none":
        options["authenticator"] = peer.authenticate

    def protocol() -> SMTP:
        peer.connections += 1
        return partial(_Smtp, peer, hostname="peer.test", decode_data=False, **options)()

    server = await asyncio.get_running_loop().create_server(
        protocol, "127.0.0.1", 0, ssl=context if tls == "ssl" else None
    )
    peer.port = server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        server.close()
        await server.wait_closed()
