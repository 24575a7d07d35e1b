"""The address table (which statuses make an address undeliverable), SMTP answers' codes, and
when a delivery report is believed: only about our message, to that recipient."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from channels.email.bounces import (
    ADDRESS_STATUSES,
    address_verdict,
    believe_report,
    smtp_code,
)
from channels.email.parse import Bounce


def bounce(recipient: str = "ana@example.com", original: str | None = None) -> Bounce:
    return Bounce(recipient, "5.1.1", "failed", None, original_recipient=original)


def test_user_unknown_and_no_such_domain_make_the_address_undeliverable() -> None:
    for status in ("5.1.1", "5.1.2", "5.1.10", "5.2.1"):
        assert address_verdict(status).undeliverable, status


def test_a_refusal_of_the_message_keeps_the_address() -> None:
    for status in ("5.7.1", "5.2.2", "5.3.4", "5.0.0", "5.1.7", "5.1.8", "4.1.1", "2.0.0"):
        verdict = address_verdict(status)
        assert not verdict.undeliverable, status
        assert status in verdict.reason


def test_microsoft_365_refusing_an_unknown_recipient_marks_the_address() -> None:
    """Exchange Online answers "550 5.4.1 Recipient address rejected: Access denied"."""
    assert address_verdict("5.4.1").undeliverable


def test_a_bare_reply_code_says_nothing_about_the_address() -> None:
    assert not address_verdict("550").undeliverable
    assert not address_verdict(None).undeliverable


@given(st.from_regex(r"\A5\.1\.(1|2|3|6|10)\Z"), st.text(alphabet=" ;", max_size=3))
def test_the_table_reads_a_status_followed_by_anything(status: str, tail: str) -> None:
    assert address_verdict(status + tail).undeliverable


@given(st.integers(0, 999), st.integers(0, 999))
def test_only_the_table_marks_an_address(subject: int, detail: int) -> None:
    status = f"5.{subject}.{detail}"
    assert address_verdict(status).undeliverable == (status in ADDRESS_STATUSES)


def test_smtp_code_prefers_the_enhanced_status_of_the_same_class() -> None:
    assert smtp_code(550, "5.1.1 <x@example.com>: Recipient address rejected") == "5.1.1"
    assert smtp_code(451, "4.3.0 try again later") == "4.3.0"
    assert smtp_code(550, "User unknown") == "550"
    assert smtp_code(550, "4.1.1 contradicts its own reply code") == "550"
    assert smtp_code(550, "5.1.1.2 is not a status") == "550"


def test_a_report_naming_no_message_is_not_believed() -> None:
    verdict = believe_report(bounce(), about=None, sent_to=["ana@example.com"])
    assert not verdict.believed
    assert "does not name" in verdict.reason


def test_a_report_about_a_message_we_never_sent_is_not_believed() -> None:
    verdict = believe_report(bounce(), about="random-123@evil.example", sent_to=[])
    assert not verdict.believed
    assert "never sent" in verdict.reason


def test_a_report_about_our_message_to_someone_else_is_not_believed() -> None:
    verdict = believe_report(
        bounce("charlotte@example.org"), about="sastre.87@tienda.example", sent_to=["chloe@x.net"]
    )
    assert not verdict.believed
    assert "another address" in verdict.reason


def test_a_report_about_our_message_to_that_recipient_is_believed() -> None:
    about = "sastre.87@tienda.example"
    case_differs = bounce("Ana@Example.com")
    assert believe_report(case_differs, about=about, sent_to=["ana@example.com"]).believed
    assert believe_report(bounce(), about=about, sent_to=["ana@example.com"]).believed
    # Forwarded on: the final recipient differs, the original one is the address we wrote to.
    forwarded = bounce("ana@forwarded.example", original="ana@example.com")
    assert believe_report(forwarded, about=about, sent_to=["ana@example.com"]).believed


def test_a_report_about_our_message_to_a_look_alike_address_is_not_believed() -> None:
    """Case folding makes faß.example fass.example: another domain, with another owner."""
    verdict = believe_report(
        bounce("ceo@faß.example"), about="sastre.87@tienda.example", sent_to=["ceo@fass.example"]
    )
    assert not verdict.believed
