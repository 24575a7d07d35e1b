"""Turning loosely typed input (a CSV row, a JSON body) into a checked `CustomerRecord`.

One parser for every way customers come in, so the CSV import and the API accept and refuse the
same things for the same reasons. A field left out or empty means "not given": an update keeps the
stored value.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any

import pycountry
from typing_extensions import override

from crm_core.identities import InvalidIdentity, has_control_characters, normalise
from crm_core.models import IdentityKind

__all__ = [
    "MAX_MONEY_CENTS",
    "STANDARD_FIELDS",
    "CustomerRecord",
    "FieldError",
    "RecordErrors",
    "cents_to_units",
    "parse_customer",
]

STANDARD_FIELDS = (
    "external_id",
    "name",
    "email",
    "phone",
    "telegram",
    "country",
    "timezone",
    "language",
    "revenue",
    "cost_to_serve",
    "potential_value",
)
MAX_MONEY_CENTS = 10**15  # ten trillion units: beyond that it is a typo, not a customer
_MAX_MONEY_UNITS = Decimal(MAX_MONEY_CENTS).scaleb(-2)  # exact, like every Decimal comparison
_MAX_NAME = 200
# Digits with an optional '.' for decimals; ',' only as a thousands separator in groups of three.
# "1.234,56" is refused rather than guessed: misreading money is worse than asking.
_MONEY = re.compile(r"\+?(?:\d+|\d{1,3}(?:,\d{3})+)(?:\.\d+)?|\+?\.\d+")
# What a JSON number or a spreadsheet may write: 1e13, 1.5E+3, 1e-21.
_SCIENTIFIC = re.compile(r"\+?(?:\d+(?:\.\d*)?|\.\d+)[eE][+-]?\d{1,9}")
_CENT = Decimal("0.01")
# The largest amount, as people write it, for the reason that names the limit.
_MAX_SHOWN = f"{(_MAX_MONEY_UNITS - _CENT):,.2f}"
_TOO_LARGE = f"is implausibly large (at most {_MAX_SHOWN})"
_TOO_PRECISE = "has more than 2 decimals"
_NOT_FINITE = frozenset({"nan", "snan", "inf", "infinity"})
# Whole units with at most two decimals, as nearly every file writes money: exact in integers.
_PLAIN_MONEY = re.compile(r"(\d{1,15})(?:\.(\d{1,2}))?")


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    reason: str

    @override
    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class RecordErrors(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    external_id: str
    name: str | None = None
    language: str | None = None
    timezone: str | None = None
    country: str | None = None
    email: str | None = None
    phone: str | None = None
    telegram: str | None = None
    revenue_cents: int | None = None
    cost_to_serve_cents: int | None = None
    potential_value_cents: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def identities(self) -> list[tuple[str, str]]:
        """(kind, normalised value) pairs this record claims, the external id first."""
        pairs = [(IdentityKind.EXTERNAL.value, self.external_id)]
        for kind, value in (
            (IdentityKind.EMAIL, self.email),
            (IdentityKind.PHONE, self.phone),
            (IdentityKind.TELEGRAM, self.telegram),
        ):
            if value is not None:
                pairs.append((kind.value, value))
        return pairs


@cache
def _countries() -> frozenset[str]:
    return frozenset(country.alpha_2 for country in pycountry.countries)


@cache
def _languages() -> frozenset[str]:
    return frozenset(lang.alpha_2 for lang in pycountry.languages if getattr(lang, "alpha_2", None))


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _parse_money(name: str, value: Any, errors: list[FieldError]) -> int | None:
    text = _text(value)
    if text is None:
        return None
    if isinstance(value, bool):
        errors.append(FieldError(name, "must be a number"))
        return None
    plain = _PLAIN_MONEY.fullmatch(text)
    if plain is not None:
        whole, decimals = plain.groups()
        cents = int(whole) * 100 + int((decimals or "").ljust(2, "0"))
        if cents < MAX_MONEY_CENTS:
            return cents
    if text.startswith("-"):
        errors.append(FieldError(name, "must not be negative"))
        return None
    if text.lstrip("+").lower() in _NOT_FINITE:
        errors.append(FieldError(name, "must be a finite number"))
        return None
    if not (_MONEY.fullmatch(text) or _SCIENTIFIC.fullmatch(text)):
        errors.append(FieldError(name, f"{text!r} is not an amount like 1234.56 (or 1,234.56)"))
        return None
    amount = Decimal(text.replace(",", ""))
    # Compared before any arithmetic: Decimal arithmetic works to 28 digits, and quantizing a
    # larger amount (10**30) raises InvalidOperation instead of answering.
    if amount >= _MAX_MONEY_UNITS:
        errors.append(FieldError(name, _TOO_LARGE))
        return None
    # Money has cents, not fractions of one: 0.999 or 1e-21 is a mistake to point at, not an
    # amount to round silently. (Trailing zeros, as in 12.500, are no decimals.)
    if amount.quantize(_CENT) != amount:
        errors.append(FieldError(name, _TOO_PRECISE))
        return None
    return int(amount.scaleb(2))


def _parse_country(value: Any, errors: list[FieldError]) -> str | None:
    text = _text(value)
    if text is None:
        return None
    code = text.upper()
    if code not in _countries():
        errors.append(FieldError("country", f"{text!r} is not an ISO 3166 alpha-2 country code"))
        return None
    return code


def _parse_language(value: Any, errors: list[FieldError]) -> str | None:
    text = _text(value)
    if text is None:
        return None
    primary = text.replace("_", "-").split("-", 1)[0].lower()
    if primary not in _languages():
        errors.append(FieldError("language", f"{text!r} is not an ISO 639-1 language code"))
        return None
    return primary


def _parse_timezone(value: Any, errors: list[FieldError]) -> str | None:
    text = _text(value)
    if text is None:
        return None
    if text not in _timezones():
        errors.append(FieldError("timezone", f"{text!r} is not an IANA time zone"))
        return None
    return text


def _parse_identity(
    kind: IdentityKind, value: Any, region: str, errors: list[FieldError], name: str = ""
) -> str | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return normalise(kind, text, region)
    except InvalidIdentity as e:
        errors.append(FieldError(name or kind.value, e.reason))
        return None


def _attribute_value(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _attribute_errors(attributes: Mapping[str, Any]) -> list[FieldError]:
    """Attributes end up in JSON on PostgreSQL, which refuses NUL anywhere in a string."""
    found = []
    for key, value in attributes.items():
        texts = [key] + ([value] if isinstance(value, str) else [])
        if any(has_control_characters(text, allowed="\t\n\r") for text in texts):
            found.append(FieldError(key, "contains control characters"))
    return found


def parse_customer(fields: Mapping[str, Any], default_region: str) -> CustomerRecord:
    """Check every field; raise `RecordErrors` listing all that are wrong, in column order."""
    errors: list[FieldError] = []
    external_id = _parse_identity(
        IdentityKind.EXTERNAL, fields.get("external_id"), "", errors, name="external_id"
    )
    if external_id is None and not errors:
        errors.append(FieldError("external_id", "is required"))
    name = _text(fields.get("name"))
    if name is not None and len(name) > _MAX_NAME:
        errors.append(FieldError("name", f"longer than {_MAX_NAME} characters"))
    if name is not None and has_control_characters(name):
        errors.append(FieldError("name", "contains control characters"))
    country = _parse_country(fields.get("country"), errors)
    region = country or default_region
    email = _parse_identity(IdentityKind.EMAIL, fields.get("email"), region, errors)
    phone = _parse_identity(IdentityKind.PHONE, fields.get("phone"), region, errors)
    telegram = _parse_identity(IdentityKind.TELEGRAM, fields.get("telegram"), region, errors)
    timezone = _parse_timezone(fields.get("timezone"), errors)
    language = _parse_language(fields.get("language"), errors)
    revenue = _parse_money("revenue", fields.get("revenue"), errors)
    cost_to_serve = _parse_money("cost_to_serve", fields.get("cost_to_serve"), errors)
    potential_value = _parse_money("potential_value", fields.get("potential_value"), errors)
    attributes = {
        key.strip(): _attribute_value(value)
        for key, value in fields.items()
        if key not in STANDARD_FIELDS and key.strip() and _text(value) is not None
    }
    errors.extend(_attribute_errors(attributes))
    if errors:
        raise RecordErrors(errors)
    assert external_id is not None
    return CustomerRecord(
        external_id=external_id,
        name=name,
        language=language,
        timezone=timezone,
        country=country,
        email=email,
        phone=phone,
        telegram=telegram,
        revenue_cents=revenue,
        cost_to_serve_cents=cost_to_serve,
        potential_value_cents=potential_value,
        attributes=attributes,
    )


def cents_to_units(cents: int) -> float | int:
    """Money for JSON: whole units stay integers, the rest keeps its two decimals."""
    return cents // 100 if cents % 100 == 0 else cents / 100
