"""The HTML part says what the text says: escaped, paragraphs, line breaks, links."""

from __future__ import annotations

import re
from html import unescape

from hypothesis import given
from hypothesis import strategies as st

from channels.base import ChannelName, OutboundMessage
from channels.email.render import html_part
from channels.email.send import build_message

_WHITE = re.compile(r"\s")
_OURS = re.compile(r"</?(?:p|br|a)(?: href=\"[^\"]*\")?>")


def _body(html: str) -> str:
    return html.split("<body", 1)[1].split(">", 1)[1].rsplit("</body>", 1)[0]


def test_paragraphs_line_breaks_and_links() -> None:
    html = html_part("Hi <Ana> & co,\nline two\n\n\nSee https://x.example/a?b=1&c=2.", lang="es")
    assert '<html lang="es">' in html
    assert "<p>Hi &lt;Ana&gt; &amp; co,<br>\nline two</p>" in html
    link = "https://x.example/a?b=1&amp;c=2"
    assert f'<p>See <a href="{link}">{link}</a>.</p>' in html


def test_a_language_that_is_not_a_tag_is_left_out() -> None:
    assert "<html>" in html_part("x", lang='en" onload="x')


@given(st.text())
def test_every_tag_is_ours_and_the_text_survives(text: str) -> None:
    body = _body(html_part(text))
    assert "<" not in _OURS.sub("", body)  # whatever the text held is escaped
    # Only white space may differ: blank lines become paragraph breaks, and are not kept.
    assert _WHITE.sub("", unescape(_OURS.sub("", body))) == _WHITE.sub("", text)


def test_a_message_holding_the_shared_boundary_gets_its_own() -> None:
    text = "--=_sastre.alternative_=\nnot a boundary"
    message = OutboundMessage(ChannelName.EMAIL, "a@b.example", text, reference="1")
    built = build_message(message, sender="s@b.example", domain="b.example", default_subject="S")
    assert built.get_boundary() != "=_sastre.alternative_="
    plain = built.get_body(("plain",))
    assert plain is not None
    assert plain.get_content().rstrip("\n") == text
