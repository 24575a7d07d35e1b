"""Normalising identity values, so the same person written two ways is one identity.

Pure functions: they raise `InvalidIdentity` with a reason a person can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

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
    if _CONTROL.search(text) is None:  # nearly always: no need to list them
        return False
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


# --- phone numbers: phonenumbers' own rules, compiled once per region ---------------------------

# Digits with the usual separators, and a '+' only in front: the shape of nearly every number in
# a file. Anything else (letters, extensions, other scripts' digits) goes to phonenumbers.
_SIMPLE_PHONE = re.compile(r"\+?[0-9 ().-]+")
_NOT_DIGIT = re.compile(r"[^0-9]")
_MIN_NSN, _MAX_NSN = 2, 17  # phonenumbers' bounds on a national significant number
_MAX_COUNTRY_CODE_DIGITS = 3


@dataclass(frozen=True, slots=True)
class _NumberDesc:
    """One of a region's number descriptions (fixed line, mobile, toll free, ...)."""

    lengths: frozenset[int]  # empty: any length
    pattern: re.Pattern[str]

    def matches(self, national: str) -> bool:
        if self.lengths and len(national) not in self.lengths:
            return False
        return self.pattern.fullmatch(national) is not None


@dataclass(frozen=True, slots=True)
class _Region:
    """What phonenumbers knows about a region, compiled once, for `_fast_e164`."""

    country_code: int
    general: _NumberDesc
    possible_lengths: tuple[int, ...]
    local_only_lengths: frozenset[int]
    leading_digits: re.Pattern[str] | None
    international_prefix: re.Pattern[str] | None
    national_prefix: re.Pattern[str] | None
    national_prefix_transform: bool

    # For each length of a national number, one pattern joining every description (fixed line,
    # mobile, toll free, ...) that allows that length: a number is valid when one matches.
    kinds_by_length: dict[int, re.Pattern[str]]

    def is_number_type_known(self, national: str) -> bool:
        """phonenumbers' number type is not UNKNOWN (what makes a number valid)."""
        if not self.general.matches(national):
            return False
        kinds = self.kinds_by_length.get(len(national))
        return kinds is not None and kinds.fullmatch(national) is not None


def _kinds_by_length(kinds: list[_NumberDesc]) -> dict[int, re.Pattern[str]]:
    joined = {}
    for length in range(_MIN_NSN, _MAX_NSN + 1):
        fitting = [k.pattern.pattern for k in kinds if not k.lengths or length in k.lengths]
        if fitting:
            joined[length] = re.compile("|".join(f"(?:{pattern})" for pattern in fitting))
    return joined


def _desc(desc: Any) -> _NumberDesc | None:
    if desc is None or not desc.national_number_pattern:
        return None
    return _NumberDesc(frozenset(desc.possible_length), re.compile(desc.national_number_pattern))


def _optional_pattern(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None


@cache
def _region(code: str) -> _Region | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(code, None)
    if metadata is None or metadata.general_desc is None or metadata.country_code is None:
        return None
    general, lengths = _desc(metadata.general_desc), tuple(metadata.general_desc.possible_length)
    if general is None or not lengths:
        return None
    descs = [
        metadata.premium_rate,
        metadata.toll_free,
        metadata.shared_cost,
        metadata.voip,
        metadata.personal_number,
        metadata.pager,
        metadata.uan,
        metadata.voicemail,
        metadata.fixed_line,
    ]
    # As phonenumbers does: when both patterns are the same, mobile is not asked separately.
    if not metadata.same_mobile_and_fixed_line_pattern:
        descs.append(metadata.mobile)
    return _Region(
        country_code=int(metadata.country_code),
        general=general,
        kinds_by_length=_kinds_by_length([d for d in map(_desc, descs) if d is not None]),
        possible_lengths=lengths,
        local_only_lengths=frozenset(metadata.general_desc.possible_length_local_only),
        leading_digits=_optional_pattern(metadata.leading_digits),
        international_prefix=_optional_pattern(metadata.international_prefix),
        national_prefix=_optional_pattern(metadata.national_prefix_for_parsing),
        national_prefix_transform=bool(metadata.national_prefix_transform_rule),
    )


def _keeps_length(national: str, region: _Region) -> bool:
    """phonenumbers' length test says the number may be complete (possible, or too long)."""
    lengths, length = region.possible_lengths, len(national)
    if lengths[0] == -1 or length in region.local_only_lengths or length < lengths[0]:
        return False
    return length > lengths[-1] or length in lengths


def _without_national_prefix(national: str, region: _Region) -> str | None:
    """The number without its national (trunk) prefix, as phonenumbers strips it; None when
    phonenumbers would rewrite it with a transform rule (left to phonenumbers)."""
    if region.national_prefix is None:
        return national
    match = region.national_prefix.match(national)
    if match is None:
        return national
    groups = match.groups()
    if region.national_prefix_transform and groups and groups[-1] is not None:
        return None
    stripped = national[match.end() :]
    general = region.general.pattern
    if general.fullmatch(national) and not general.fullmatch(stripped):
        return national
    return stripped if _keeps_length(stripped, region) else national


def _region_of_number(country_code: int, national: str) -> _Region | None:
    """The region a valid number belongs to, chosen as phonenumbers chooses it."""
    codes = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ())
    if len(codes) == 1:
        return _region(codes[0])
    for code in codes:
        region = _region(code)
        if region is None:
            continue
        if region.leading_digits is not None:
            if region.leading_digits.match(national):
                return region
        elif region.is_number_type_known(national):
            return region
    return None


def _fast_e164(text: str, region_code: str) -> str | None:
    """The E.164 form of a valid number, by phonenumbers' own rules and metadata, for plainly
    written numbers; None whenever the answer needs phonenumbers' full parser (which then gives
    the answer, or the reason a number is refused). A property test holds the two to the same
    answers: this is the same check, compiled once per region instead of on every call.
    """
    if not _SIMPLE_PHONE.fullmatch(text):
        return None
    digits = _NOT_DIGIT.sub("", text)
    if text.startswith("+"):
        if len(digits) <= _MIN_NSN or digits.startswith("0"):
            return None
        for width in range(1, _MAX_COUNTRY_CODE_DIGITS + 1):
            if int(digits[:width]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                break
        else:
            return None
        country_code, national = int(digits[:width]), digits[width:]
        codes = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[country_code]
        if codes[0] == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
            return None
        home = _region(codes[0])
    else:
        home = _region(region_code)
        if home is None:
            return None
        # An international dialling prefix (011, 00), or the country code typed without '+'.
        if home.international_prefix is not None and home.international_prefix.match(digits):
            return None
        if digits.startswith(str(home.country_code)):
            return None
        country_code, national = home.country_code, digits
    if home is None or len(national) < _MIN_NSN:
        return None
    significant = _without_national_prefix(national, home)
    if significant is None or not _MIN_NSN <= len(significant) <= _MAX_NSN:
        return None
    owner = _region_of_number(country_code, significant)
    if owner is None or owner.country_code != country_code:
        return None
    if not owner.is_number_type_known(significant):
        return None
    return f"+{country_code}{significant}"


def normalise_phone(value: str, region: str) -> str:
    """E.164. `region` (ISO alpha-2) applies when the number has no country code."""
    fast = _fast_e164(value.strip(), region.upper())
    if fast is not None:
        return fast
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as e:
        raise InvalidIdentity(IdentityKind.PHONE, f"not a phone number ({e._msg})") from None
    if not phonenumbers.is_valid_number(number):
        # An invalid number has no region of its own; its country code still names its country.
        where = phonenumbers.region_code_for_country_code(number.country_code or 0)
        if where in (phonenumbers.UNKNOWN_REGION, phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY):
            where = f"+{number.country_code}"
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
