"""`SmtpEmail`: the e-mail `Sender`, through an SMTP server with aiosmtplib.

Each message is a text part and an HTML alternative (given, or made from the text by
`channels.email.render`); it carries our own Message-ID
(the provider id the outbox keeps, and what a bounce names), In-Reply-To and References when it
answers a customer's message, and on marketing mail `List-Unsubscribe` (the HTTPS one-click link
and a mailto) with `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 2369, RFC 8058).

A message given a `reference` (our id for it) gets a Message-ID made from it, so a re-send after
a crash carries the same id and the recipient's mail system can tell it is the same message.

SMTP's answers become `DeliveryFailed`: a 4xx (and a dropped or refused connection) may succeed
later, a 5xx will not. A failed login is the exception: it is our configuration, not the
message, so the message waits for the fix instead of failing for good.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import re
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, make_msgid, parseaddr
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import aiosmtplib
from typing_extensions import override

from channels.base import DeliveryFailed, OutboundMessage
from channels.email.bounces import smtp_code
from channels.email.render import html_part

__all__ = [
    "SMTPUTF8_MISSING",
    "TLS_MODES",
    "UNSUBSCRIBE_SUBJECT",
    "SmtpEmail",
    "TlsMode",
    "build_message",
    "message_id_for",
]

TlsMode = Literal["starttls", "ssl", "none"]
TLS_MODES: tuple[TlsMode, ...] = ("starttls", "ssl", "none")
_ID_SAFE = re.compile(r"[^A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]")
# "=" is encoded in quoted-printable and "_" is not base64: only a 7bit part could hold it.
_BOUNDARY = "=_sastre.alternative_="
# The subject of the mail our List-Unsubscribe mailto has a mailbox send (`channels.email.inbound`
# reads it as the request whatever the body holds).
UNSUBSCRIBE_SUBJECT = "unsubscribe"
# The failure code of an address the SMTP server cannot take without SMTPUTF8.
SMTPUTF8_MISSING = "smtputf8"


class _FoldedOnce(BaseHeader):
    """A header that keeps its folded form per policy: folding (line breaks, encoded words)
    is the costliest part of writing a message out, and a header never changes once made."""

    @override
    def fold(self, *, policy: Policy) -> str:
        key = (policy.max_line_length, policy.linesep, getattr(policy, "utf8", False))
        folds: dict[tuple[object, ...], str] = self.__dict__.setdefault("_folds", {})
        folded = folds.get(key)
        if folded is None:
            folded = folds[key] = super().fold(policy=policy)
        return folded


class _Tokens(UnstructuredHeader, BaseHeader):
    """A header whose value is ASCII tokens that mail systems match byte for byte: message ids
    (Message-ID, In-Reply-To, References) and List-Unsubscribe's `<URL>`s. Folded between
    tokens only. The stdlib's folder turns a token longer than a line (a Microsoft 365
    Message-ID, a signed unsubscribe link) into RFC 2047 encoded words, which are only for
    unstructured text: nothing matches such an id, and no mailbox offers such a link."""

    @override
    def fold(self, *, policy: Policy) -> str:
        tokens = str(self).split()
        if not getattr(policy, "utf8", False):
            # A message id in UTF-8 (RFC 6532) goes on the wire only in a message sent with
            # SMTPUTF8, which aiosmtplib uses (writing with a utf8 policy) only for a non-ASCII
            # address. Elsewhere it cannot be written: as RFC 2047 encoded words it would be no
            # id at all. It is left out (threading then rests on the subject), the header too if
            # nothing is left.
            tokens = [token for token in tokens if token.isascii()]
            if not tokens:
                return ""
        width = policy.max_line_length or 0
        head = f"{self.name}:"
        lines: list[str] = []
        line = head
        for token in tokens:
            if width and line != head and len(line) + 1 + len(token) > width:
                lines.append(line)
                line = ""  # the next line starts with the space before its token
            line += " " + token
        lines.append(line)
        return policy.linesep.join(lines) + policy.linesep


class _OwnMessageId(_Tokens):
    """Our Message-IDs are made of safe characters only (`message_id_for`):
    read as plain text, not through the RFC 5322 msg-id grammar, whose parser costs a tenth
    of writing a message. One per message, as the standard class allows."""

    max_count = 1


class _RepeatedHeaders(HeaderRegistry):
    """The standard header classes, each (name, text) parsed once and the result reused.

    Parsing headers is most of the cost of building a message, and most of ours repeat from
    one message to the next: From, the subject, the customer's address, the Date within a
    second, Content-Type. A parsed header is an immutable string, so sharing one between
    messages changes nothing in them (and, each folding itself once, it is folded once for
    all of them). Message-IDs never repeat: parsed each time. The standard registry also
    makes a new class for every header it is asked about (`max_count` at every assignment):
    here one per header name."""

    def __init__(self) -> None:
        super().__init__(base_class=_FoldedOnce)
        # The registry holds mixins (combined with the base class on use), as its defaults are.
        self.map_to_type("message-id", _OwnMessageId)
        for name in ("in-reply-to", "references", "list-unsubscribe"):
            self.map_to_type(name, _Tokens)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one registry for the module's life
    def _parsed(self, name: str, value: str) -> BaseHeader:
        header: BaseHeader = super().__call__(name, value)
        return header

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one registry for the module's life
    def _class(self, name: str) -> type[BaseHeader]:
        cls: type[BaseHeader] = super().__getitem__(name)
        return cls

    @override
    def __getitem__(self, name: str) -> type[BaseHeader]:
        return self._class(name.lower())

    @override
    def __call__(self, name: str, value: Any) -> Any:
        if type(value) is str and name.lower() != "message-id":
            return self._parsed(name, value)
        return super().__call__(name, value)


_POLICY = policy.default.clone(header_factory=_RepeatedHeaders())


def _bracketed(message_id: str) -> str:
    bare = message_id.strip().strip("<>")
    return f"<{bare}>"


# The longest id that goes in our threading headers. A header line holds 998 characters at most
# (RFC 5322 2.1.1) and an id cannot be folded; a longer one would make the answer one a strict
# server refuses. Ids run to 60 characters or so; this leaves room for any real one.
MAX_THREAD_ID = 250


def _threadable(message_id: str) -> bool:
    """Whether another message's id can go in our In-Reply-To or References: one token of
    printable characters, not over `MAX_THREAD_ID`. One that holds a control character or a
    line separator (a vertical tab, U+2028: the stdlib refuses them in any header, as line
    breaks) would make every answer in its thread unbuildable; left out, the answer still goes,
    threaded by its subject."""
    bare = message_id.strip().strip("<>")
    return (
        0 < len(bare) <= MAX_THREAD_ID
        and bare.isprintable()
        and not any(c.isspace() or c in "<>" for c in bare)
    )


@functools.lru_cache(maxsize=64)
def _from_header(sender: str) -> BaseHeader:
    """The From header for a sender, parsed once (an adapter sends from one address)."""
    name, address = parseaddr(sender)
    value = Address(display_name=name, addr_spec=address) if name else address
    header: BaseHeader = _POLICY.header_factory("From", value)
    return header


def message_id_for(reference: str, domain: str, key: bytes | None) -> str:
    """Our Message-ID for a message with this reference (without brackets): the same for every
    send of it, and, given a key, not to be guessed. A delivery report naming one of our
    Message-IDs is believed for the address that message went to (`channels.email.bounces`):
    were the ids our message numbers, anyone could report every address we write to as
    undeliverable by naming them in turn. The seal is a MAC of the reference, 64 bits of it."""
    safe = _ID_SAFE.sub("-", reference)
    if key is None:
        return f"sastre.{safe}@{domain}"
    seal = hmac.new(key, b"email message-id:" + reference.encode(), "sha256").hexdigest()[:16]
    return f"sastre.{safe}.{seal}@{domain}"


def build_message(
    message: OutboundMessage,
    *,
    sender: str,
    domain: str,
    default_subject: str,
    unsubscribe_mailto: str | None = None,
    id_key: bytes | None = None,
) -> EmailMessage:
    """The RFC 5322 message for an outbound e-mail (see the module's note). `id_key` seals the
    Message-ID made from the message's reference (`message_id_for`)."""
    email = EmailMessage(policy=_POLICY)
    email["From"] = _from_header(sender)
    email["To"] = message.address
    email["Subject"] = message.subject or default_subject
    email["Date"] = format_datetime(datetime.now(UTC))
    if message.reference:
        email["Message-ID"] = f"<{message_id_for(message.reference, domain, id_key)}>"
    else:
        email["Message-ID"] = make_msgid(idstring="sastre", domain=domain)
    references = [_bracketed(r) for r in message.references if _threadable(r)]
    if message.in_reply_to and _threadable(message.in_reply_to):
        replied = _bracketed(message.in_reply_to)
        email["In-Reply-To"] = replied
        if replied not in references:
            references.append(replied)
    if references:
        email["References"] = " ".join(references)
    # Our mail is answered by people: Exchange's out-of-office replies to it are noise (and
    # the start of a loop with an auto-replying customer).
    email["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    if message.unsubscribe_url:
        links = [f"<{message.unsubscribe_url}>"]
        if unsubscribe_mailto:
            links.append(f"<mailto:{unsubscribe_mailto}?subject={quote(UNSUBSCRIBE_SUBJECT)}>")
        email["List-Unsubscribe"] = ", ".join(links)
        email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    email.set_content(message.text)
    html = message.html or html_part(message.text)
    email.add_alternative(html, subtype="html")
    if _BOUNDARY not in message.text and _BOUNDARY not in html:
        # One boundary for every message (its Content-Type parsed once) unless this message's
        # text holds it: a random one costs a regex compiled per message when written out.
        email.set_boundary(_BOUNDARY)
    return email


def _failure(error: Exception) -> DeliveryFailed:
    """An aiosmtplib error as our own; see the module's note for which may be retried."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in error.recipients]
        permanent = bool(codes) and all(500 <= code < 600 for code in codes)
        reason = "; ".join(f"{r.code} {r.message}" for r in error.recipients) or str(error)
        first = error.recipients[0] if error.recipients else None
        return DeliveryFailed(
            reason,
            retryable=not permanent,
            # "5.1.1" rather than "550": the enhanced status says what is wrong with the address
            code=smtp_code(first.code, first.message) if first is not None else None,
        )
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        return DeliveryFailed(
            f"the SMTP server refused our login: {error.code} {error.message}",
            retryable=True,
            code=str(error.code),
        )
    if isinstance(error, aiosmtplib.SMTPResponseException) and not isinstance(
        error, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPTimeoutError
    ):
        return DeliveryFailed(
            f"{error.code} {error.message}",
            retryable=not 500 <= error.code < 600,
            code=smtp_code(error.code, error.message),
        )
    # Connection refused, dropped or timed out, TLS failing: the server may be back later.
    return DeliveryFailed(f"SMTP connection failed: {error}", retryable=True)


class SmtpEmail:
    """Sends through one SMTP server, over a few connections kept open between sends."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        tls: TlsMode = "starttls",
        default_subject: str = "",
        unsubscribe_mailto: str | None = None,
        return_path: str | None = None,
        timeout: float = 30,
        connections: int = 4,
        validate_certs: bool = True,
        ca_file: str | None = None,
        id_key: bytes | None = None,
    ) -> None:
        if tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}, not {tls!r}")
        _, address = parseaddr(sender)
        if "@" not in address:
            raise ValueError(f"the sender {sender!r} is not an e-mail address")
        self._host, self._port = host, port
        self._sender = sender
        self._envelope_from = return_path or address
        self._domain = address.rsplit("@", 1)[1]
        self._username, self._password = username, password
        self._tls = tls
        self._default_subject = default_subject
        # A URI goes in List-Unsubscribe's brackets: the bare address, not "Shop <addr>".
        self._unsubscribe_mailto = parseaddr(unsubscribe_mailto or "")[1] or None
        self._timeout = timeout
        self._validate_certs = validate_certs
        self._ca_file = ca_file  # PEM authorities trusted besides the system's (a private CA)
        self._id_key = id_key  # seals our Message-IDs (`message_id_for`)
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._connections = max(1, connections)
        self._slots = asyncio.Semaphore(self._connections)
        self._open: set[aiosmtplib.SMTP] = set()

    @property
    def domain(self) -> str:
        return self._domain

    @property
    def connections(self) -> int:
        """The most connections it keeps open to the server at once."""
        return self._connections

    async def __aenter__(self) -> SmtpEmail:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait()
        for client in list(self._open):
            await self._drop(client)

    async def send(self, message: OutboundMessage) -> str:
        """Deliver to the SMTP server; returns our Message-ID (without angle brackets)."""
        try:
            email = build_message(
                message,
                sender=self._sender,
                domain=self._domain,
                default_subject=self._default_subject,
                unsubscribe_mailto=self._unsubscribe_mailto,
                id_key=self._id_key,
            )
        except (ValueError, TypeError) as error:  # e.g. a line break in a header: no retry helps
            raise DeliveryFailed(
                f"the message cannot be built: {error}", retryable=False, code="unbuildable"
            ) from error
        message_id = str(email["Message-ID"]).strip().strip("<>")
        async with self._slots:
            client = await self._client()
            try:
                async with asyncio.timeout(self._timeout):
                    await client.send_message(
                        email, sender=self._envelope_from, recipients=[message.address]
                    )
            except aiosmtplib.SMTPRecipientsRefused as error:
                await self._reset(client)
                raise _failure(error) from error
            except aiosmtplib.SMTPResponseException as error:
                if error.code == 421:  # the server is closing this connection
                    await self._drop(client)
                else:
                    await self._reset(client)
                raise _failure(error) from error
            except aiosmtplib.SMTPNotSupported as error:
                # An address that needs SMTPUTF8 (a non-ASCII mailbox) and a server without it:
                # the connection is fine, and trying again will not make the server take it.
                await self._reset(client)
                raise DeliveryFailed(
                    f"the SMTP server cannot take this address: {error}",
                    retryable=False,
                    code=SMTPUTF8_MISSING,
                ) from error
            except TimeoutError as error:  # mid-conversation: the connection is of no more use
                self._open.discard(client)
                client.close()
                raise DeliveryFailed(
                    f"the SMTP server did not answer within {self._timeout:g} s", retryable=True
                ) from error
            except (aiosmtplib.SMTPException, OSError) as error:
                await self._drop(client)
                raise _failure(error) from error
            self._idle.put_nowait(client)
        return message_id

    async def _client(self) -> aiosmtplib.SMTP:
        """An open connection: an idle one that still answers, else a new one."""
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if client.is_connected:
                return client
            await self._drop(client)
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._username or None,
            password=self._password or None,
            use_tls=self._tls == "ssl",
            start_tls=self._tls == "starttls",
            validate_certs=self._validate_certs,
            cert_bundle=self._ca_file,
            timeout=self._timeout,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as error:
            raise _failure(error) from error
        # From here each send is timed as a whole (one timer), not each of its four commands
        # (a timer apiece, a tenth of the client's work).
        client.timeout = None
        self._open.add(client)
        return client

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        """A refused message leaves the connection usable after RSET."""
        try:
            async with asyncio.timeout(self._timeout):
                await client.rset()
        except (aiosmtplib.SMTPException, OSError):
            await self._drop(client)
            return
        self._idle.put_nowait(client)

    async def _drop(self, client: aiosmtplib.SMTP) -> None:
        self._open.discard(client)
        try:
            if client.is_connected:
                async with asyncio.timeout(self._timeout):
                    await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()
