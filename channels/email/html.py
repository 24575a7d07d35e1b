"""An HTML mail body as text: the whole of it, and the newest reply without the quoted thread.

Plain-text mail marks its thread with "> " lines and an "On ... wrote:" line, which
`parse.latest_reply` finds. HTML mail marks it in the markup instead, and once the markup is
turned into text (inscriptis lays it out as a browser would, indenting quotes and blocks) those
lines no longer start a line, and no "> " is left. So the thread is cut from the HTML tree by
the clients' own markers before the text is made:

* Gmail: `class="gmail_quote"` (the "El ... escribió:" line and the quote in it);
* Apple Mail, Thunderbird: `<blockquote type="cite">`, and Thunderbird's `moz-cite-prefix`;
* Yahoo: `class="yahoo_quoted"`;
* Outlook: `id="divRplyFwdMsg"` (its "De: / Enviado:" block) and `id="appendonsend"`, and in
  Outlook for Windows the `border-top` block that starts "From:" / "De:" — for these three the
  quoted message is not inside the marker but after it, so everything after it goes too.

The work is bounded (`MAX_HTML_CHARS`): inscriptis is pure Python, about 2 µs of CPU per
character, and a 3 MB table would hold a worker (and, through the interpreter's lock, the
event loop beside it) for seconds. A reply is at the top of its mail and the bot reads 4,000
characters of it, so only the first `MAX_HTML_CHARS` characters of an HTML body are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from inscriptis import Inscriptis
from lxml.etree import ParserError
from lxml.html import HtmlElement, document_fromstring

__all__ = ["MAX_HTML_CHARS", "HtmlText", "html_text"]

MAX_HTML_CHARS: Final = 100_000  # about 0.2 s of CPU at most per message
_XML_DECLARATION: Final = re.compile(r"\A<\?xml[^>]*\?>", re.IGNORECASE)
# Markers whose element is the quoted thread (removed, the text after it kept).
_QUOTE_ITSELF: Final = (
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_quote ')]"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_quote_container ')]"
    " | //blockquote[@type='cite']"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' moz-cite-prefix ')]"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' yahoo_quoted ')]"
)
# Markers after which the rest of the document is the quoted thread.
_QUOTE_FROM_HERE: Final = (
    "//*[@id='divRplyFwdMsg'] | //*[@id='appendonsend']"
    " | //div[contains(translate(@style, 'BORDERTOP', 'bordertop'), 'border-top')]"
)
_HEADER_WORDS: Final = ("from:", "de:")  # how Outlook's quoted header block begins


@dataclass(frozen=True, slots=True)
class HtmlText:
    text: str  # the whole body as text
    reply: str  # the same without the quoted thread
    truncated: bool  # only the first MAX_HTML_CHARS characters were read


def html_text(html: str) -> HtmlText:
    """The text of an HTML body and of its newest reply (see the module's note)."""
    truncated = len(html) > MAX_HTML_CHARS
    tree = _tree(_first(html) if truncated else html)
    if tree is None:
        return HtmlText("", "", truncated)
    text = _as_text(tree)
    reply = _as_text(tree) if _cut_quotes(tree) else text
    return HtmlText(text, reply, truncated)


def _first(html: str) -> str:
    """The first MAX_HTML_CHARS characters, cut before a tag rather than inside one."""
    start = html.rfind("<", 0, MAX_HTML_CHARS)
    return html[: start if start > 0 else MAX_HTML_CHARS]


def _tree(html: str) -> HtmlElement | None:
    # An XHTML body starts with an XML declaration naming its encoding, which lxml refuses in
    # text already decoded (a ValueError): the text is decoded, so the declaration goes.
    html = _XML_DECLARATION.sub("", html.strip(), count=1).strip()
    if not html:
        return None
    try:
        return document_fromstring(html)
    except (ParserError, ValueError):  # nothing lxml calls a document (e.g. only a comment)
        return None


def _as_text(tree: HtmlElement) -> str:
    text = str(Inscriptis(tree).get_text()).strip("\n")
    return text + "\n" if text.strip() else ""


def _cut_quotes(tree: HtmlElement) -> bool:
    """Remove the quoted thread from the tree; whether there was one."""
    cut = False
    for element in tree.xpath(_QUOTE_FROM_HERE):
        if element.getparent() is None or not _starts_quote(element):
            continue
        _drop_rest(element)
        cut = True
    for element in tree.xpath(_QUOTE_ITSELF):
        if element.getparent() is not None:  # not inside something removed already
            element.drop_tree()  # keeps the text that follows it
            cut = True
    return cut


def _starts_quote(element: HtmlElement) -> bool:
    """Outlook's markers by id always do; a bordered block only when it is a "From:" header."""
    if element.get("id") in ("divRplyFwdMsg", "appendonsend"):
        return True
    start = " ".join(element.text_content().split())[:40].lower()
    return start.startswith(_HEADER_WORDS)


def _drop_rest(element: HtmlElement) -> None:
    """Remove an element and everything after it in the document."""
    node: HtmlElement = element
    while True:
        parent = node.getparent()
        if parent is None or parent.tag in ("body", "html"):
            if parent is not None:
                _drop_following(node, parent)
            break
        _drop_following(node, parent)
        node = parent
    element_parent = element.getparent()
    if element_parent is not None:
        element_parent.remove(element)  # its tail (text after it) goes with it


def _drop_following(node: HtmlElement, parent: HtmlElement) -> None:
    for sibling in list(node.itersiblings()):
        parent.remove(sibling)
    node.tail = None
