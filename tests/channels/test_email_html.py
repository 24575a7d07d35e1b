"""The quoted thread of HTML mail is cut from its markup; the work per message is bounded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from channels.email.html import MAX_HTML_CHARS, html_text


def test_gmail_quote_inside_a_newer_container_is_cut() -> None:
    html = (
        '<div dir="ltr">Hello</div><div class="gmail_quote gmail_quote_container">'
        "<div>On Sun, Shop wrote:</div><blockquote>Reply STOP</blockquote></div>"
    )
    result = html_text(html)
    assert result.reply.strip() == "Hello"
    assert "STOP" in result.text


def test_a_bordered_block_that_is_no_header_is_kept() -> None:
    html = '<div>Sizes:</div><div style="border-top: 1px solid">S, M and L please</div>'
    assert "S, M and L please" in html_text(html).reply


def test_html_without_a_quote_gives_the_same_reply_as_text() -> None:
    result = html_text("<p>Just a question</p>")
    assert result.reply == result.text == "Just a question\n"
    assert not result.truncated


def test_nothing_to_read() -> None:
    assert html_text("  ") == html_text("<!-- -->")


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet="<>/ab p\n", max_size=300), st.integers(0, 3 * MAX_HTML_CHARS))
def test_any_html_is_read_within_the_bound(fragment: str, padding: int) -> None:
    result = html_text(fragment + "x" * padding)
    assert result.truncated == (len(fragment) + padding > MAX_HTML_CHARS)
    assert len(result.text) <= MAX_HTML_CHARS + 1
