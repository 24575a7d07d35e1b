"""Whether an e-mail's sender is proven to own its From address.

Anyone can write `From: ceo@bigcustomer.example`. A sender counts as proven only when

* a DKIM signature verifies (dkimpy) and its signing domain (`d=`) is aligned with the From
  domain: the same organisational domain, as DMARC's relaxed alignment reads it (the Public
  Suffix List, shipped with `publicsuffixlist`, says where a domain's organisation starts); or
* the topmost RFC 8601 `Authentication-Results` header was stamped by a relay we trust (its
  authserv-id is configured) and says dkim=pass for an aligned `header.d`, or dmarc=pass for
  the From domain. Only the topmost counts: every relay adds its header above the ones it got,
  so anything lower down may have been written by the sender themselves.

A message with more than one From header proves nothing (which of them did the signature
cover?). DNS look-ups go through a resolver hook (`dnsfunc`, dkimpy's): tests answer with their
own keys, production uses dkimpy's resolver (dnspython), off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesParser
from functools import lru_cache

import authres
import dkim
import idna
from dkim.canonicalization import CanonicalizationPolicy
from publicsuffixlist import PublicSuffixList

__all__ = [
    "DnsFunc",
    "Proof",
    "aligned",
    "dkim_domains",
    "organisational_domain",
    "prove_sender",
    "prove_sender_async",
    "relay_verdict",
]

log = logging.getLogger(__name__)

# dkimpy's resolver hook: the TXT record of a name (b"selector._domainkey.example.com.").
DnsFunc = Callable[..., bytes | None]
MAX_SIGNATURES = 8  # a message with more is not worth the look-ups


@dataclass(frozen=True, slots=True)
class Proof:
    proven: bool
    how: str  # "dkim d=example.com", "relay mx.example.net: dmarc=pass", or why not

    def as_metadata(self) -> dict[str, str]:
        return {"sender_proven": "yes" if self.proven else "no", "sender_proof": self.how}


@lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # parses the bundled list once


def organisational_domain(domain: str) -> str:
    """example.co.uk for mail.shop.example.co.uk; the domain itself when it is a suffix. An
    internationalised domain in its ASCII form (xn--...), the form DKIM's `d=` is written in."""
    domain = _ascii(domain.strip().rstrip(".").lower())
    return _suffixes().privatesuffix(domain) or domain


def _ascii(domain: str) -> str:
    """bücher.example → xn--bcher-kva.example, as IDNA 2008 with UTS #46 writes it (the `idna`
    library, as `email_validator` writes the identities we keep): Python's own codec is IDNA
    2003, which maps faß.de to fass.de, another domain with another owner. A name IDNA refuses
    stays as it is (and aligns with nothing but itself)."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError:
        return domain


def aligned(from_domain: str, signing_domain: str) -> bool:
    """DMARC's relaxed alignment: both domains share their organisational domain."""
    if not from_domain or not signing_domain:
        return False
    return organisational_domain(from_domain) == organisational_domain(signing_domain)


def _domain_of(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    return address.rsplit("@", 1)[1].strip().rstrip(".").lower() or None


def dkim_domains(raw: bytes, dnsfunc: DnsFunc | None = None) -> list[str]:
    """The signing domains (`d=`) of the DKIM signatures that verify, in header order."""
    try:
        verifier = dkim.DKIM(raw, minkey=1024)
        count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    except Exception:  # not even headers dkimpy can read
        return []
    passed: list[str] = []
    for index in range(min(count, MAX_SIGNATURES)):
        try:
            ok = (
                verifier.verify(idx=index)
                if dnsfunc is None
                else verifier.verify(idx=index, dnsfunc=dnsfunc)
            )
        except Exception as error:  # a broken signature or key, or DNS failing: no proof
            log.debug("DKIM signature %d does not verify: %s", index, error)
            continue
        if ok and verifier.domain and _signs_whole_body(verifier):
            passed.append(verifier.domain.decode("ascii", "replace").lower().rstrip("."))
    return passed


def _signs_whole_body(verifier: dkim.DKIM) -> bool:
    """Whether the signature just verified covers the whole body. With a body length (`l=`)
    it covers only that many bytes of it: anything appended after them is unsigned, and
    whoever holds one signed mail of the sender's could add their own request below it
    (RFC 6376 8.2). Such a signature proves nothing unless its length is the whole body."""
    fields = verifier.signature_fields
    length = fields.get(b"l")
    if length is None:
        return True
    try:
        policy_ = CanonicalizationPolicy.from_c_value(fields.get(b"c", b"simple/simple"))
        return int(length) >= len(policy_.canonicalize_body(verifier.body))
    except Exception:  # verify() read these already; anything odd proves nothing
        return False


# A CR not followed by LF. The stdlib's parser ends a header line at one, dkimpy does not: a
# header `X-A: a\rFrom: ceo@victim.example` is a From to the first and part of X-A to the
# second, so a mail signed by the attacker's own mailbox at the victim's provider would verify
# while the From we read is the victim's. No mail client writes one there.
_BARE_CR = re.compile(rb"\r(?!\n)")


def _header_section(raw: bytes) -> bytes:
    """The headers as dkimpy reads them: up to the first empty line, lines ending in LF or CRLF."""
    return re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]


def relay_verdict(message: Message, from_domain: str, trusted: Iterable[str]) -> str | None:
    """What the topmost Authentication-Results says for the From domain, if a trusted relay
    stamped it: "dkim=pass" / "dmarc=pass", else None."""
    trusted_ids = {relay.strip().lower() for relay in trusted if relay.strip()}
    if not trusted_ids:
        return None
    values = message.get_all("Authentication-Results") or []
    if not values:
        return None
    try:
        header = authres.AuthenticationResultsHeader.parse_value(" ".join(str(values[0]).split()))
    except Exception:  # authres.AuthResError and anything a hostile header provokes
        return None
    if str(header.authserv_id).lower() not in trusted_ids:
        return None
    for result in header.results:
        method, outcome = str(result.method).lower(), str(result.result).lower()
        if outcome != "pass":
            continue
        properties = {f"{p.type}.{p.name}".lower(): str(p.value) for p in result.properties}
        if method == "dmarc" and properties.get("header.from", "").lower() == from_domain:
            return "dmarc=pass"
        if method == "dkim" and aligned(from_domain, properties.get("header.d", "").lower()):
            return "dkim=pass"
    return None


def prove_sender(
    raw: bytes,
    sender: str | None,
    *,
    trusted_relays: Iterable[str] = (),
    dnsfunc: DnsFunc | None = None,
) -> Proof:
    """Is `sender` (the From address read from `raw`) proven? See the module's note."""
    from_domain = _domain_of(sender)
    if from_domain is None:
        return Proof(False, "no From address")
    try:
        headers = BytesParser(policy=policy.compat32).parsebytes(raw, headersonly=True)
    except Exception:
        return Proof(False, "unreadable headers")
    if len(headers.get_all("From") or []) != 1:
        return Proof(False, "not exactly one From header")
    if _BARE_CR.search(_header_section(raw)):
        return Proof(False, "a carriage return alone in the headers")
    relay = relay_verdict(headers, from_domain, trusted_relays)
    if relay is not None:
        authserv = str(headers.get_all("Authentication-Results", [""])[0]).split(";", 1)[0]
        return Proof(True, f"relay {' '.join(authserv.split())}: {relay}")
    domains = dkim_domains(raw, dnsfunc)
    for domain in domains:
        if aligned(from_domain, domain):
            return Proof(True, f"dkim d={domain}")
    if domains:
        return Proof(False, f"dkim d={', '.join(domains)} not aligned with {from_domain}")
    return Proof(False, "no DKIM signature that verifies, no trusted relay's pass")


async def prove_sender_async(
    raw: bytes,
    sender: str | None,
    *,
    trusted_relays: Iterable[str] = (),
    dnsfunc: DnsFunc | None = None,
) -> Proof:
    """`prove_sender` in a thread: DNS look-ups and RSA must not hold the event loop."""
    relays = tuple(trusted_relays)
    return await asyncio.to_thread(
        prove_sender, raw, sender, trusted_relays=relays, dnsfunc=dnsfunc
    )
