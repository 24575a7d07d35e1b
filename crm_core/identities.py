"""Normalising identity values, so the same person written two ways is one identity.

Pure functions: they raise `InvalidIdentity` with a reason a person can act on.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from crm_core.models import IdentityKind

__all__ = [
    "InvalidIdentity",
    "has_control_characters",
    "normalise",
    "normalise_email",
    "normalise_phone",
]

_WEBCHAT_ID = re.compile(r"[A-Za-z0-9_-]{8,128}")
_MAX_EXTERNAL_ID = 255
_MAX_TELEGRAM_DIGITS = 20  # Telegram ids fit in 52 bits; anything longer is not one


# Unicode category Cc is exactly these: C0 controls, DEL and the C1 controls.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# A plain ASCII dot-atom local part (RFC 5322 atext), the shape of nearly every real address.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_MAX_LOCAL = 64
_MAX_ADDRESS = 254


def has_control_characters(text: str, allowed: str = "") -> bool:
    """True for C0/C1 controls and DEL (Unicode category Cc), which no name or id should hold:
    PostgreSQL refuses NUL outright, and the rest are invisible traps in a console."""
    return any(ch not in allowed for ch in _CONTROL.findall(text))


class InvalidIdentity(ValueError):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


@lru_cache(maxsize=65_536)
def _checked_domain(domain: str) -> str | None:
    """The ASCII (IDNA) form of a domain email-validator accepts, or None.

    A bulk import holds a million addresses but a few thousand domains: checking each domain
    once (the expensive half of email-validator's work) keeps the check without its cost.
    """
    try:
        return str(validate_email(f"a@{domain}", check_deliverability=False).ascii_domain)
    except EmailNotValidError:
        return None


def normalise_email(value: str) -> str:
    """Lower-case, IDNA (punycode) domain. Syntax is checked by email-validator; no DNS lookups.

    Plain ASCII local parts take a fast path (the local part by RFC 5322's atext grammar, the
    domain by email-validator, cached); anything else, and every error message, comes from
    email-validator itself. A property test holds the two paths to the same answers.
    """
    text = value.strip()
    local, at, domain = text.rpartition("@")
    if (
        at
        and len(local) <= _MAX_LOCAL
        and len(text) <= _MAX_ADDRESS
        and _PLAIN_LOCAL.fullmatch(local)
    ):
        ascii_domain = _checked_domain(domain)
        if ascii_domain is not None:
            return f"{local.lower()}@{ascii_domain.lower()}"
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError as e:
        raise InvalidIdentity(IdentityKind.EMAIL, str(e)) from None
    return f"{checked.local_part.lower()}@{checked.ascii_domain.lower()}"


def normalise_phone(value: str, region: str) -> str:
    """E.164. `region` (ISO alpha-2) applies when the number has no country code."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as e:
        raise InvalidIdentity(IdentityKind.PHONE, f"not a phone number ({e._msg})") from None
    if not phonenumbers.is_valid_number(number):
        where = phonenumbers.region_code_for_number(number) or region
        raise InvalidIdentity(IdentityKind.PHONE, f"{value!r} is not a valid number in {where}")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _normalise_telegram(value: str) -> str:
    # The numeric Telegram user id: usernames can be changed or given away, ids cannot.
    text = value.strip()
    if not text.isdecimal() or len(text) > _MAX_TELEGRAM_DIGITS or int(text) <= 0:
        raise InvalidIdentity(IdentityKind.TELEGRAM, "must be the numeric Telegram user id")
    return str(int(text))


def _normalise_webchat(value: str) -> str:
    text = value.strip()
    if not _WEBCHAT_ID.fullmatch(text):
        raise InvalidIdentity(IdentityKind.WEBCHAT, "must be 8-128 letters, digits, '-' or '_'")
    return text


def _normalise_external(value: str) -> str:
    text = value.strip()
    if not text:
        raise InvalidIdentity(IdentityKind.EXTERNAL, "is empty")
    if len(text) > _MAX_EXTERNAL_ID:
        raise InvalidIdentity(IdentityKind.EXTERNAL, f"longer than {_MAX_EXTERNAL_ID} characters")
    if has_control_characters(text):
        raise InvalidIdentity(IdentityKind.EXTERNAL, "contains control characters")
    return text


def normalise(kind: str, value: str, region: str) -> str:
    """The canonical form of an identity value of `kind`; `region` is used for phone numbers."""
    match kind:
        case IdentityKind.EMAIL:
            return normalise_email(value)
        case IdentityKind.PHONE:
            return normalise_phone(value, region)
        case IdentityKind.TELEGRAM:
            return _normalise_telegram(value)
        case IdentityKind.WEBCHAT:
            return _normalise_webchat(value)
        case IdentityKind.EXTERNAL:
            return _normalise_external(value)
    raise InvalidIdentity(kind, f"unknown identity kind; use one of {', '.join(IdentityKind)}")
