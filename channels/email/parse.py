"""A raw e-mail (RFC 5322 bytes) into what Sastre keeps of it, and never an exception.

The stdlib `email` package with policy `default` does the parsing. Around it:

* the body: the text/plain part, else (none, or a blank one) the HTML one turned into text by
  inscriptis (it writes plain text laid out as a browser would, tables included; html2text writes
  Markdown and is GPL, which this Apache-licensed project cannot ship), at most the first
  `MAX_HTML_CHARS` of it (`channels.email.html`). Any charset; a part labelled ISO-8859-1 or
  US-ASCII (in any spelling) is read as Windows-1252, and one labelled GB2312 or GBK as
  GB18030, their supersets, as browsers do, because mail clients label text that way; a
  charset nobody knows is read as UTF-8 with replacements;
* what the bot reads (`reply`): the newest reply, without the quoted thread under it and the
  signature, in Spanish and English (mail-parser-reply; in HTML mail the clients' quote markup
  is cut before the text is made). The full body is kept (`text`);
* the subject as one line: line breaks folded to spaces, control characters dropped (it is
  shown to staff and reused in our "Re:", where a line break cannot go in a header);
* attachments as metadata (name, type, size), their bytes only when the caller keeps them;
* header values in raw UTF-8 (RFC 6532, what SMTPUTF8 mail carries: `From: josé@ejemplo.es`)
  read as UTF-8 (the stdlib leaves such bytes as surrogate escapes), else as Windows-1252;
* threading keys from Message-ID, In-Reply-To and References, and the key that makes a message
  delivered twice one message (`dedupe_key`: the Message-ID, else a hash of the raw bytes);
* mail that must never be answered (`auto`: auto-replies, bulk and list mail, bounces) and
  RFC 3464 delivery reports (`bounces`);
* whatever was wrong with it (`defects`): a malformed message is kept and flagged.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser, HeaderParser
from email.utils import getaddresses, parsedate_to_datetime

from mailparser_reply import EmailReplyParser

from channels.base import storable
from channels.email.html import MAX_HTML_CHARS, html_text
from channels.email.signature import strip_signature

__all__ = [
    "MAX_ID",
    "Attachment",
    "Bounce",
    "ParsedEmail",
    "auto_reason",
    "html_to_text",
    "latest_reply",
    "message_ids",
    "one_line",
    "parse_email",
]

MAX_ID = 200  # the longest provider id the messages table holds
# The References kept: the thread's root and the nearest ones (RFC 5322 3.6.4 lets a long list be
# trimmed so, the root first). Anything may be in a header: a reply citing 40,000 ids would
# otherwise be carried into our answer's header and into the query that threads it.
MAX_REFERENCES = 20
# How much of a text is searched for its newest reply: five times what the bot reads of an
# e-mail (`dialog.media`); the whole text is stored, for a person. The reply finders' work grows
# faster than the text (mail-parser-reply's with the square of a run of blank lines: 16,000 of
# them took 15 s), so runs of blank lines are one blank line to them too (`_BLANK_LINES`).
REPLY_SCAN = 20_000
_BLANK_LINES = re.compile(r"\n(?:[^\S\n]*\n)+")
# Charsets read as their supersets, as browsers read them (WHATWG Encoding): mail clients label
# Windows-1252 text ISO-8859-1 or US-ASCII, and GBK text GB2312. By the codec a label names,
# so that every spelling of it counts ("iso_8859-1", "cp819", "ansi_x3.4-1968").
_SUPERSETS = {
    "iso8859-1": "windows-1252",
    "ascii": "windows-1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
}
# An id is what its brackets hold but spaces and control characters: a NUL in one reached the
# database (the threading query, a bounce's look-up) and failed there.
_MESSAGE_ID = re.compile(r"<([^<>\s\x00-\x1f\x7f]+)>")
_LINE_END = re.compile(r"\r\n?")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_BULK = frozenset({"bulk", "junk", "list"})
_REPORTS = {"delivery-status": "delivery report", "disposition-notification": "read receipt"}
_REPLY_PARSER = EmailReplyParser(languages=["es", "en"])
# How the line introducing a quote ends, in the languages mail clients write it in ("wrote:",
# "escribió:", "a écrit :", "schrieb:", "escreveu:", "scrisse:", "schreef:").
_CITED = r"(?:wrote|escribi[óo]|a[ \t]+[ée]crit|schrieb|escreveu|scrisse|schreef)[ \t]*:[ \t]*"
# The line introducing the quoted lines that end a plain-text reply ("On ... wrote:", "El ...
# escribió:"): one ending so, or one holding an address and ending in a colon. Any other line
# above the quote is the customer's own, colon or not ("This is what you sent me:"). Some clients
# wrap a long one (a long name and its address) onto two lines, the second a word or three
# ending so: then the line above it goes too when it holds an address, never otherwise. Those
# lines may hold a ">" ("Tienda <hola@tienda.example>"); they just do not start with one, as
# quoted lines do. Up to its first "@" a line is read once (`[^\n@]*`): any line may be long
# and full of them, and `[^\n]*@` would try every one of them again.
_QUOTE_HEADER = re.compile(
    "|".join(
        (
            r"\n(?![ \t]*>)[^\n@]*@[^\n]*\n[ \t]*(?:[^\s>:][^\s:]*[ \t]+){0,2}" + _CITED,
            r"\n(?![ \t]*>)[^\n]*\b" + _CITED,
            r"\n(?![ \t]*>)[^\n@]*@[^\n]*:[ \t]*",
        )
    )
    + r"\Z",
    re.IGNORECASE,
)
# The line Spanish clients put above the thread ("El dom, 6 dic 2026 a las 3:00, Tienda
# <hola@tienda.example> escribió:", wrapped onto two lines by some), which mail-parser-reply
# does not know when no "> " lines follow it (HTML mail turned into text, Outlook's plain text).
_SPANISH_HEADER = re.compile(r"(?m)^[ \t]*El\b[^\n]{0,300}?(?:\n[^\n]{0,300}?)?\bescribió:[ \t]*$")
# Outlook's line above the thread in plain text, in either language ("-----Mensaje original-----").
_ORIGINAL_MESSAGE = re.compile(
    r"(?mi)^[ \t]*-{2,}[ \t]*(?:mensaje original|original message)[ \t]*-{2,}"
)


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str | None
    content_type: str
    size: int  # bytes, decoded
    content: bytes | None = None  # None unless the caller keeps attachments' bytes


@dataclass(frozen=True, slots=True)
class Bounce:
    """One recipient of an RFC 3464 delivery status report."""

    recipient: str
    status: str  # e.g. "5.1.1"
    action: str  # failed, delayed, delivered, relayed, expanded
    diagnostic: str | None
    original_recipient: str | None = None  # the address as the sender wrote it, when given

    def __post_init__(self) -> None:
        # Anyone can send a report: what it says is kept (audited, or an outbox row's reason)
        # as text a database takes.
        for name in ("recipient", "action", "diagnostic", "original_recipient"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, storable(value))

    @property
    def permanent(self) -> bool:
        """5.x.x: never deliverable as addressed; 4.x.x is transient (the MTA retries)."""
        return self.status.startswith("5.")


@dataclass(frozen=True, slots=True)
class ParsedEmail:
    sender: str | None  # the From address, as written
    sender_name: str | None
    subject: str | None
    date: datetime | None
    message_id: str | None  # without angle brackets
    in_reply_to: str | None
    references: tuple[str, ...]
    text: str  # the whole body as text
    reply: str  # what the bot reads: the newest reply, no quoted thread, no signature
    from_html: bool  # the body was HTML only, turned into text
    attachments: tuple[Attachment, ...]
    auto: str | None  # why this must not be answered (auto-reply, bulk, bounce), or None
    bounces: tuple[Bounce, ...]
    bounced_message_id: str | None  # the Message-ID of our message a report is about
    defects: tuple[str, ...]  # what was malformed; the message is kept all the same
    dedupe_key: str

    @property
    def thread_key(self) -> str:
        """The thread's first message: the root of References, else what this one answers,
        else itself. Every reply in a thread carries the root (RFC 5322 3.6.4)."""
        if self.references:
            return self.references[0]
        return self.in_reply_to or self.message_id or self.dedupe_key

    @property
    def malformed(self) -> bool:
        return bool(self.defects)


def parse_email(raw: bytes, *, keep_attachments: bool = False) -> ParsedEmail:
    """Parse a raw message. Never raises: what cannot be read is a defect, and the raw bytes
    decoded as well as they can be are the text."""
    try:
        return _parse(raw, keep_attachments=keep_attachments)
    except Exception as error:  # the stdlib parser is lenient, but a header may still throw
        # (or a body nested a thousand parts deep exhausts its recursion): the headers alone
        # may still say who wrote, and about what.
        text = raw.decode("utf-8", errors="replace")
        defects: list[str] = []
        sender = sender_name = subject = message_id = auto = None
        try:
            headers = BytesHeaderParser(policy=policy.default).parsebytes(raw)
            assert isinstance(headers, EmailMessage)
            sender, sender_name = _sender(headers, defects)
            subject = one_line(_header(headers, "Subject", defects))
            message_id = _first_id(_raw_header(headers, "Message-ID"))
            auto = auto_reason(headers)
        except Exception:  # nothing more to read: the raw bytes are the text
            pass
        return ParsedEmail(
            sender=sender,
            sender_name=sender_name,
            subject=subject,
            date=None,
            message_id=message_id,
            in_reply_to=None,
            references=(),
            text=text,
            reply=text.strip(),
            from_html=False,
            attachments=(),
            auto=auto,
            bounces=(),
            bounced_message_id=None,
            defects=(f"unreadable: {type(error).__name__}: {error}", *defects),
            dedupe_key=_dedupe_key(message_id, raw),
        )


def _parse(raw: bytes, *, keep_attachments: bool) -> ParsedEmail:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)  # policy.default makes EmailMessage objects
    defects: list[str] = []
    sender, sender_name = _sender(message, defects)
    message_id = _first_id(_raw_header(message, "Message-ID"))
    # Each step on its own: one part nobody can read (a charset the codec refuses, markup the
    # HTML parser rejects) costs that part, never the sender and threading read above.
    try:
        body, from_html = _body(message, defects)
        text = _part_text(body, defects) if body is not None else ""
        if body is not None and not from_html:
            for more in _continuations(message, body):
                text = text.rstrip("\n") + "\n\n" + _part_text(more, defects)
        reply_text = text
        if from_html:
            converted = html_text(text)
            if converted.truncated:
                defects.append(
                    f"HTML body of {len(text)} characters: the first {MAX_HTML_CHARS} read"
                )
            # Layout indents blocks and quotes; the reply finders look at the starts of lines.
            text = converted.text
            reply_text = "\n".join(map(str.lstrip, converted.reply.split("\n")))
    except Exception as error:
        defects.append(f"unreadable body: {type(error).__name__}: {error}")
        body, from_html = None, False
        text = reply_text = _raw_body(raw)
    try:
        bounces, bounced = _report(message)
    except Exception as error:
        defects.append(f"unreadable delivery report: {type(error).__name__}")
        bounces, bounced = (), None
    try:
        attachments = tuple(_attachments(message, body, keep=keep_attachments))
    except Exception as error:
        defects.append(f"unreadable attachments: {type(error).__name__}")
        attachments = ()
    for part in _parts(message):
        defects.extend(_defect_name(defect) for defect in part.defects)
    if message_id is None:
        defects.append("no Message-ID")
    return ParsedEmail(
        sender=sender,
        sender_name=sender_name,
        subject=one_line(_header(message, "Subject", defects)),
        date=_date(_header(message, "Date", defects)),
        message_id=message_id,
        in_reply_to=_first_id(_raw_header(message, "In-Reply-To")),
        references=_trimmed(message_ids(_raw_header(message, "References") or "")),
        text=text,
        reply=latest_reply(reply_text, sender_name=sender_name),
        from_html=from_html,
        attachments=attachments,
        auto=auto_reason(message) or ("delivery report" if bounces else None),
        bounces=bounces,
        bounced_message_id=bounced,
        defects=tuple(dict.fromkeys(defects)),  # each once, in order
        dedupe_key=_dedupe_key(message_id, raw),
    )


def message_ids(value: str) -> tuple[str, ...]:
    """The ids in a References / In-Reply-To header, in order, without angle brackets (a byte
    no charset decodes, which the stdlib keeps as a lone surrogate, as U+FFFD: `storable`)."""
    return tuple(map(storable, _MESSAGE_ID.findall(value)))


def _trimmed(references: tuple[str, ...]) -> tuple[str, ...]:
    """The root and the nearest `MAX_REFERENCES - 1`, in order, of a long References list."""
    if len(references) <= MAX_REFERENCES:
        return references
    return (references[0], *references[-(MAX_REFERENCES - 1) :])


def _first_id(value: str | None) -> str | None:
    if not value:
        return None
    found = message_ids(value)
    if found:
        return found[0]
    bare = value.strip()  # some clients write the id without brackets
    # One token of printable characters: a control character or line separator in it would
    # end up in our answer's In-Reply-To, which no mail library writes.
    return bare if bare and bare.isprintable() and not any(c.isspace() for c in bare) else None


def _raw_body(raw: bytes) -> str:
    """What follows the header block, as well as it decodes: the text of a body no part of
    which could be read."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        _, found, rest = raw.partition(separator)
        if found:
            return _LINE_END.sub("\n", rest.decode("utf-8", errors="replace"))
    return ""


def _hash_key(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _dedupe_key(message_id: str | None, raw: bytes) -> str:
    if message_id is None:
        return _hash_key(raw)
    if len(message_id) > MAX_ID:
        return _hash_key(message_id.encode("utf-8", "surrogateescape"))
    return message_id


def _defect_name(defect: object) -> str:
    return type(defect).__name__


_ESCAPED = re.compile("[\udc80-\udcff]")  # a byte the parser could not decode as ASCII


def _utf8(text: str) -> str:
    """A header value with the raw bytes the parser left as surrogate escapes decoded: as UTF-8
    (RFC 6532), else as Windows-1252 (an old client's 8-bit header), never a surrogate."""
    if _ESCAPED.search(text) is None:
        return text
    data = text.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("windows-1252", errors="replace")


def _header(message: Message, name: str, defects: list[str]) -> str | None:
    """A header's decoded value; a header the parser cannot read is a defect, not an error."""
    try:
        value = message.get(name)
    except Exception as error:
        defects.append(f"unreadable {name}: {type(error).__name__}")
        return None
    if value is None:
        return None
    text = _utf8(str(value)).strip()
    if _REPLACED in text:
        # The stdlib's header object keeps no 8-bit byte it could not decode as UTF-8: it has
        # put U+FFFD there (an old client's "Subject: Informaci\xf3n"). Read as written then,
        # its bytes by `_utf8` and its encoded words (RFC 2047) decoded.
        written = _raw_header(message, name)
        with contextlib.suppress(Exception):  # a broken encoded word: the stdlib's reading
            text = str(make_header(decode_header(written or ""))).strip() or text
    return text or None


_REPLACED = "\ufffd"


_FOLD = re.compile(r"\r?\n(?=[ \t])")


def _raw_header(message: Message, name: str) -> str | None:
    """A header's value as written, unfolded: for ids. The stdlib's Message-ID parser stops at
    the first character outside a dot-atom, and its string is what it read: an id such as
    `<ticket:1001@crm.example>` came out as `<ticket`, the same for every ticket (and so one
    dedupe key for different messages)."""
    wanted = name.lower()
    for key, value in message.raw_items():
        if key.lower() == wanted:
            text = _utf8(_FOLD.sub("", str(value))).strip()
            return text or None
    return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(value: str | None) -> str | None:
    """A header value as one line: whitespace runs (line breaks, tabs) folded to one space,
    control characters dropped. An encoded word may hold a CR/LF the header's own folding
    did not; in a subject we store, show and answer with "Re:" it must not survive."""
    if value is None:
        return None
    folded = " ".join(_CONTROL.sub(" ", value).split())
    return folded or None


def _sender(message: EmailMessage, defects: list[str]) -> tuple[str | None, str | None]:
    """The From address (the first, if there are several) and the name with it."""
    try:
        header = message["From"]
        addresses: tuple[Address, ...] = tuple(header.addresses) if header is not None else ()
        found = [(a.display_name or None, a.addr_spec) for a in addresses if "@" in a.addr_spec]
    except Exception:
        found = []
    if not found:
        # An unparseable From: the looser reading of email.utils, of the header as written (the
        # stdlib cannot even make a header object of a name whose encoded word decodes to half
        # a UTF-16 pair, "=?utf-7?q?+2AA-?=": the name is then kept encoded).
        raw = _raw_header(message, "From") or ""
        found = [(name or None, addr) for name, addr in getaddresses([raw]) if "@" in addr]
    if not found:
        defects.append("no From address")
        return None, None
    name, address = found[0]
    return _utf8(address), _utf8(name) if name else None


def _date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None


def _parts(message: Message) -> Iterator[Message]:
    yield message
    if not message.is_multipart():
        return  # a leaf's payload is not asked for: the stdlib decodes it with its charset
    payload = message.get_payload()
    if isinstance(payload, list):
        for part in payload:
            if isinstance(part, Message):
                yield from _parts(part)


def _body(message: EmailMessage, defects: list[str]) -> tuple[EmailMessage | None, bool]:
    """The part the customer wrote: text/plain if there is one with any text in it, else the
    HTML (some webmail and mobile clients send a blank plain alternative)."""
    try:
        body = message.get_body(preferencelist=("plain", "html"))
        if body is not None and body.get_content_type() == "text/plain" and _blank(body):
            body = message.get_body(preferencelist=("html",)) or body
    except Exception as error:
        defects.append(f"unreadable MIME structure: {type(error).__name__}")
        body = None
    if body is None and not message.is_multipart():
        body = message  # a single part of a type the client should not have used: keep it
    if body is None:
        # Broken MIME: the first text part anywhere, else nothing to read.
        body = next(
            (p for p in message.walk() if p.get_content_maintype() == "text"),
            None,
        )
        if body is not None:
            defects.append("no readable body part")
    if body is None:
        return None, False
    assert isinstance(body, EmailMessage)
    return body, body.get_content_type() == "text/html"


def _continuations(message: EmailMessage, body: EmailMessage) -> list[EmailMessage]:
    """The plain-text parts that go on after the body, with parts between them: Apple Mail
    writes a message with a picture in its middle as multipart/mixed (text, image, text), and
    the words after the picture are the customer's too (often the question itself). Unnamed,
    inline text/plain siblings after the body, in order."""
    for part in message.walk():
        if part.get_content_type() != "multipart/mixed":
            continue
        children = part.get_payload()
        if not isinstance(children, list):
            continue
        at = next((n for n, child in enumerate(children) if child is body), None)
        if at is None:
            continue
        return [
            child
            for child in children[at + 1 :]
            if isinstance(child, EmailMessage)
            and child.get_content_type() == "text/plain"
            and child.get_content_disposition() != "attachment"
            and _filename(child) is None
        ]
    return []


def _blank(part: Message) -> bool:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return False
    return isinstance(payload, bytes) and not payload.strip()


def _part_text(part: EmailMessage, defects: list[str]) -> str:
    """A text part decoded: its transfer encoding, then its charset (see the module's note),
    with its lines ending in "\n" whatever they ended in on the wire (SMTP's are "\r\n").

    No charset declared: UTF-8 if the bytes are, else Windows-1252, what the 8-bit mail of
    older clients is written in. Bytes the declared charset cannot read are replaced, and the
    message flagged as malformed for it."""
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else str(part.get_payload()).encode()
    declared = part.get_content_charset()
    charset = _superset((declared or "utf-8").lower())
    try:
        text = data.decode(charset)
    except LookupError:
        defects.append(f"unknown charset {charset!r}")
        text = data.decode("utf-8", errors="replace")
    except UnicodeError:  # a decoding error, or a codec that decodes nothing ("undefined")
        if declared is None:
            text = data.decode("windows-1252", errors="replace")
        else:
            defects.append(f"bytes that are not {charset}: replaced")
            try:
                text = data.decode(charset, errors="replace")
            except UnicodeError:
                text = data.decode("utf-8", errors="replace")
    return _LINE_END.sub("\n", text)


def _superset(charset: str) -> str:
    try:
        codec = codecs.lookup(charset).name
    except LookupError:
        return charset  # unknown: `_part_text` says so
    return _SUPERSETS.get(codec, charset)


def html_to_text(html: str) -> str:
    """HTML as a person would read it (scripts and styles dropped, tables laid out), at most
    its first `MAX_HTML_CHARS` characters."""
    return html_text(html).text


def _without_trailing_quote(text: str) -> str:
    """`text` without the block of "> " lines that ends it, nor the line(s) introducing it
    (`_QUOTE_HEADER`), blank lines between them. Read line by line from the end: a pattern
    anchored at the end is tried at every line, each time over all the quoted lines after it."""
    lines = text.split("\n")
    start = len(lines)
    while start and lines[start - 1].lstrip(" \t").startswith(">"):
        start -= 1
    if start == len(lines):
        return text
    while start and not lines[start - 1].strip(" \t"):
        start -= 1
    kept = "\n" + "\n".join(lines[:start])
    # The introducing line is the last one kept, or the last two: only they are read.
    last_two = len(kept) - len("\n" + "\n".join(lines[max(start - 2, 0) : start]))
    header = _QUOTE_HEADER.search(kept, last_two)
    return (kept if header is None else kept[: header.start()])[1:]


def latest_reply(text: str, *, sender_name: str | None = None) -> str:
    """The newest reply in a message: without the quoted thread and the signature.

    mail-parser-reply finds the clients' "On ... wrote:" / "El ... escribió:" lines and Outlook's
    "From:/De:" blocks, and signatures that announce themselves ("-- ", "Saludos,"). A block of
    "> " lines at the end is the thread too, whatever line introduced it (Gmail in Spanish writes
    "escribió:" after one space, which the library's pattern misses), and so is what follows an
    "El ... escribió:" line with no "> " under it, or Outlook's "-----Mensaje original-----";
    a trailing name-and-contact block with no sign-off is a signature too
    (`channels.email.signature`, which knows the sender's name). Nothing left: the whole text,
    so the bot never reads an empty message."""
    text = _BLANK_LINES.sub("\n\n", text[:REPLY_SCAN])
    unquoted = _without_trailing_quote(text.rstrip()).strip()
    for thread in (_SPANISH_HEADER, _ORIGINAL_MESSAGE):
        header = thread.search(unquoted)
        if header is not None and unquoted[: header.start()].strip():
            unquoted = unquoted[: header.start()].rstrip()
    try:
        parsed = _REPLY_PARSER.read(unquoted)
        reply = parsed.replies[0].body if parsed.replies else ""
    except Exception:  # a pathological body: the library's regexes are not ours to trust
        reply = ""
    newest = reply.strip() or unquoted or text.strip()
    return strip_signature(newest, sender_name)


def auto_reason(message: Message) -> str | None:
    """Why a message must not be answered (RFC 3834, and what mail software writes), or None.

    Answering an auto-reply or a list loops mail; bulk mail is nobody's question."""
    submitted = str(message.get("Auto-Submitted") or "").strip().lower()
    if submitted and not submitted.startswith("no"):
        return f"Auto-Submitted: {submitted}"
    precedence = str(message.get("Precedence") or "").strip().lower()
    if precedence in _BULK or precedence == "auto_reply":
        return f"Precedence: {precedence}"
    if message.get_content_type() == "multipart/report":  # RFC 6522: a machine's report
        kind = str(message.get_param("report-type", "") or "").lower()
        return _REPORTS.get(kind, f"report ({kind or 'no type'})")
    if message.get("X-Autoreply") is not None or message.get("X-Autorespond") is not None:
        return "X-Autoreply"
    suppress = str(message.get("X-Auto-Response-Suppress") or "").strip().lower()
    if suppress and suppress != "none":  # Exchange marks its own automatic mail so
        return f"X-Auto-Response-Suppress: {suppress}"
    if str(message.get("Return-Path") or "").strip() == "<>":
        return "null return path"  # RFC 5321 4.5.5: notifications are sent from <>
    for header in ("List-Id", "List-Unsubscribe"):  # a list's or a newsletter's (RFC 2919, 2369)
        if message.get(header) is not None:
            return header
    return None


def _report(message: EmailMessage) -> tuple[tuple[Bounce, ...], str | None]:
    """The recipients of an RFC 3464 delivery status report, and the id of the message it is
    about (from the returned message or its headers)."""
    if message.get_content_type() != "multipart/report":
        return (), None
    bounces: list[Bounce] = []
    original: str | None = None
    for part in _parts(message):
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            payload = part.get_payload()
            bounces.extend(_recipients(payload if isinstance(payload, list) else []))
        elif kind == "message/global-delivery-status":
            bounces.extend(_recipients(_global_blocks(part)))
        elif kind in _RETURNED:
            original = original or _returned_id(part)
    return tuple(bounces), original


# The returned message or its headers; the "global" ones (RFC 6533) of mail sent with SMTPUTF8.
_RETURNED = frozenset(
    {
        "message/rfc822",
        "text/rfc822-headers",
        "message/rfc822-headers",
        "message/global",
        "message/global-headers",
    }
)
_BLOCK_BREAK = re.compile(r"\n[ \t]*\n")
_ACTION = re.compile(r"\s*([A-Za-z]+)")


def _recipients(blocks: Iterable[object]) -> Iterator[Bounce]:
    """The per-recipient blocks of a delivery-status part (the first block is per-message)."""
    for block in blocks:
        if not isinstance(block, Message):
            continue
        final = _dsn_address(block.get("Final-Recipient"))
        original = _dsn_address(block.get("Original-Recipient"))
        status = _STATUS.search(str(block.get("Status") or ""))
        if not (final or original) or status is None:
            continue
        diagnostic = block.get("Diagnostic-Code")
        # "failed (permanent)": a comment may follow the action (RFC 3464's CFWS).
        action = _ACTION.match(str(block.get("Action") or ""))
        yield Bounce(
            recipient=final or original,
            status=".".join(status.groups()),
            action=action.group(1).lower() if action else "",
            diagnostic=" ".join(str(diagnostic).split()) if diagnostic else None,
            original_recipient=original or None,
        )


def _global_blocks(part: Message) -> list[Message]:
    """The blocks of a `message/global-delivery-status` part (RFC 6533: a delivery-status in
    UTF-8, what mail sent with SMTPUTF8 bounces with). The stdlib reads it as a message whose
    headers are the per-message block and whose body holds the rest, split here at the blank
    lines between blocks and each read as headers."""
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if not isinstance(inner, Message):
        return []
    body = inner.get_payload(decode=True)
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else ""
    parser = HeaderParser(policy=policy.default)
    return [
        parser.parsestr(block)
        for block in _BLOCK_BREAK.split(_LINE_END.sub("\n", text))
        if block.strip()
    ]


def _dsn_address(value: object) -> str:
    """ "rfc822; someone@example.com" → "someone@example.com" ("" when absent)."""
    if value is None:
        return ""
    return str(value).split(";", 1)[-1].strip().strip("<>").strip()


def _returned_id(part: Message) -> str | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return _first_id(_raw_header(payload[0], "Message-ID"))
    if part.get_content_type() not in ("message/rfc822", "message/global"):
        headers = part.get_payload(decode=True)
        if isinstance(headers, bytes):
            returned = BytesParser(policy=policy.default).parsebytes(headers, headersonly=True)
            return _first_id(_raw_header(returned, "Message-ID"))
    return None


def _attachments(
    message: EmailMessage, body: Message | None, *, keep: bool
) -> Iterator[Attachment]:
    """Every leaf part but the body and its HTML or plain twin, a forwarded message (`.eml`)
    as one; a delivery report's parts are not attachments."""
    report = message.get_content_type() == "multipart/report"
    for part in _leaves(message):
        if part is body:
            continue
        kind = part.get_content_type()
        if report and (kind.startswith("message/") or kind == "text/rfc822-headers"):
            continue
        named = part.get_content_disposition() == "attachment" or _filename(part) is not None
        if not named and kind in ("text/plain", "text/html"):
            continue  # the body's alternative, or a report's notification text
        content = _content(part)
        yield Attachment(
            name=_filename(part),
            content_type=kind,
            size=len(content),
            content=content if keep else None,
        )


def _leaves(part: Message) -> Iterator[Message]:
    """The parts that hold content, in order: a multipart's, each in turn; a forwarded message
    (message/rfc822) is one, not the parts inside it (they are its own body and files)."""
    if part.get_content_maintype() != "multipart":
        yield part
        return
    payload = part.get_payload()
    for child in payload if isinstance(payload, list) else ():
        if isinstance(child, Message):
            yield from _leaves(child)


def _content(part: Message) -> bytes:
    """A leaf part's bytes: decoded from its transfer encoding, a forwarded message whole."""
    try:
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            forwarded = inner[0] if isinstance(inner, list) and inner else None
            return forwarded.as_bytes() if isinstance(forwarded, Message) else b""
        data = part.get_payload(decode=True)
    except Exception:  # a broken part: listed, with nothing in it
        return b""
    return data if isinstance(data, bytes) else b""


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    return _utf8(str(name)) if name else None
