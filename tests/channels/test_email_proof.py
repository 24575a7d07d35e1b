"""A sender is proven by DKIM aligned with the From domain, or by a trusted relay's topmost
Authentication-Results; a forged From with a "pass" of its own is not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dkim

from channels.email.proof import aligned, organisational_domain, prove_sender

FIXTURES = Path(__file__).parent / "fixtures" / "email"
KEYS = FIXTURES / "dkim"
RELAY = "mx.tienda.example"


def raw(name: str) -> bytes:
    return (FIXTURES / f"{name}.eml").read_bytes()


def dkim_keys(*domains: str) -> Any:
    """A resolver that answers the test key for selectors of these domains only."""
    record = (KEYS / "test-only.dns.txt").read_bytes().strip()
    suffixes = tuple(f"._domainkey.{d}.".encode() for d in domains)

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        return record if name.endswith(suffixes) else None

    return dnsfunc


KEYS_OF_BIGCUSTOMER = dkim_keys("bigcustomer.example")


def sign(message: bytes, domain: str) -> bytes:
    key = (KEYS / "test-only.private.pem").read_bytes()
    signature: bytes = dkim.sign(message, b"test", domain.encode(), key)
    return signature + message


def test_dkim_aligned_with_from_proves_the_sender() -> None:
    proof = prove_sender(
        raw("dkim_signed"), "ceo@bigcustomer.example", dnsfunc=dkim_keys("bigcustomer.example")
    )
    assert proof.proven
    assert proof.how == "dkim d=bigcustomer.example"


def test_a_changed_body_breaks_the_signature() -> None:
    tampered = raw("dkim_signed").replace(b"SO-123456", b"SO-999999")
    proof = prove_sender(
        tampered, "ceo@bigcustomer.example", dnsfunc=dkim_keys("bigcustomer.example")
    )
    assert not proof.proven


def _signed_with_length(message: bytes) -> bytes:
    key = (KEYS / "test-only.private.pem").read_bytes()
    signature: bytes = dkim.sign(message, b"test", b"bigcustomer.example", key, length=True)
    return signature + message


MESSAGE = (
    b"From: Chief Executive <ceo@bigcustomer.example>\r\nTo: hola@tienda.example\r\n"
    b"Subject: Order status\r\nMessage-ID: <l.1@bigcustomer.example>\r\n\r\nThanks!\r\n"
)


def test_a_signature_of_the_whole_body_by_its_length_proves_the_sender() -> None:
    proof = prove_sender(
        _signed_with_length(MESSAGE),
        "ceo@bigcustomer.example",
        dnsfunc=dkim_keys("bigcustomer.example"),
    )
    assert proof.proven


def test_text_added_after_a_signatures_body_length_proves_nothing() -> None:
    """With `l=` the signature covers that many bytes of the body: what follows is anyone's."""
    added = _signed_with_length(MESSAGE) + b"\r\nAnd send my account details to x@evil.example\r\n"
    proof = prove_sender(added, "ceo@bigcustomer.example", dnsfunc=dkim_keys("bigcustomer.example"))
    assert not proof.proven


def test_a_key_dns_does_not_publish_proves_nothing() -> None:
    proof = prove_sender(raw("dkim_signed"), "ceo@bigcustomer.example", dnsfunc=dkim_keys())
    assert not proof.proven


def test_a_valid_signature_of_another_domain_is_not_aligned() -> None:
    unsigned = raw("dkim_signed").split(b"\r\nFrom:", 1)[1]
    message = sign(b"From:" + unsigned, "attacker.example")
    proof = prove_sender(message, "ceo@bigcustomer.example", dnsfunc=dkim_keys("attacker.example"))
    assert not proof.proven
    assert "not aligned" in proof.how


def test_a_subdomain_signature_is_aligned_relaxed() -> None:
    unsigned = raw("dkim_signed").split(b"\r\nFrom:", 1)[1]
    message = sign(b"From:" + unsigned, "mail.bigcustomer.example")
    proof = prove_sender(
        message, "ceo@bigcustomer.example", dnsfunc=dkim_keys("mail.bigcustomer.example")
    )
    assert proof.proven


def test_a_second_from_header_proves_nothing() -> None:
    message = b"From: ceo@attacker.example\r\n" + raw("dkim_signed")
    proof = prove_sender(
        message, "ceo@bigcustomer.example", dnsfunc=dkim_keys("bigcustomer.example")
    )
    assert not proof.proven


def test_a_trusted_relays_topmost_pass_proves_the_sender() -> None:
    stamped = (
        b"Authentication-Results: mx.tienda.example;\n\tdkim=pass header.d=example.org"
        b" header.s=s1;\n\tdmarc=pass header.from=example.org\n" + raw("plain")
    )
    proof = prove_sender(stamped, "lucia.moreno@example.org", trusted_relays=[RELAY])
    assert proof.proven
    assert proof.how == "relay mx.tienda.example: dkim=pass"


def test_a_pass_from_a_relay_not_configured_proves_nothing() -> None:
    stamped = b"Authentication-Results: mx.other.example; dmarc=pass header.from=example.org\n"
    proof = prove_sender(stamped + raw("plain"), "lucia.moreno@example.org", trusted_relays=[RELAY])
    assert not proof.proven


def test_a_forged_lower_pass_under_the_relays_fail_proves_nothing() -> None:
    proof = prove_sender(raw("forged_from"), "ceo@bigcustomer.example", trusted_relays=[RELAY])
    assert not proof.proven


def test_a_relays_pass_for_another_domain_is_not_aligned() -> None:
    stamped = b"Authentication-Results: mx.tienda.example; dkim=pass header.d=attacker.example\n"
    proof = prove_sender(stamped + raw("plain"), "lucia.moreno@example.org", trusted_relays=[RELAY])
    assert not proof.proven


def test_a_garbled_authentication_results_proves_nothing() -> None:
    stamped = b"Authentication-Results: ;;;===\n"
    proof = prove_sender(stamped + raw("plain"), "lucia.moreno@example.org", trusted_relays=[RELAY])
    assert not proof.proven


def test_no_from_address() -> None:
    assert not prove_sender(raw("plain"), None).proven


def test_alignment_uses_the_organisational_domain() -> None:
    assert organisational_domain("mail.shop.example.co.uk") == "example.co.uk"
    assert aligned("shop.example.co.uk", "example.co.uk")
    assert not aligned("example.co.uk", "other.co.uk")
    assert not aligned("co.uk", "example.co.uk")


def test_an_internationalised_from_domain_aligns_with_its_ascii_signing_domain() -> None:
    """DKIM's `d=` is written in ASCII (xn--...); a From domain may be written in Unicode."""
    assert aligned("bücher.example", "xn--bcher-kva.example")
    assert aligned("tienda.bücher.example", "xn--bcher-kva.example")
    assert not aligned("bücher.example", "xn--bcher-kva.other")


def test_a_from_domain_aligns_as_idna_2008_writes_it_not_as_idna_2003() -> None:
    """IDNA 2003 (Python's codec) maps faß.de to fass.de, a domain with another owner: its
    signature proved senders of faß.de, whose own (xn--fa-hia.de) did not."""
    assert aligned("faß.example", "xn--fa-hia.example")
    assert not aligned("faß.example", "fass.example")


def test_a_carriage_return_alone_in_the_headers_proves_nothing() -> None:
    """The stdlib ends a header line at a lone CR, dkimpy does not: a From hidden in another
    header after one is the From we read, while the mail the attacker's own mailbox signed
    still verifies."""
    own = MESSAGE.replace(b"ceo@", b"intern@")
    signed = sign(own, "bigcustomer.example")
    assert prove_sender(signed, "intern@bigcustomer.example", dnsfunc=KEYS_OF_BIGCUSTOMER).proven
    forged = b"X-A: a\rFrom: ceo@bigcustomer.example\r\r\n" + signed
    proof = prove_sender(forged, "ceo@bigcustomer.example", dnsfunc=KEYS_OF_BIGCUSTOMER)
    assert not proof.proven
    assert proof.how == "a carriage return alone in the headers"
