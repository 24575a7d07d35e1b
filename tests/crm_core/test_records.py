"""Parsing loosely typed input (a CSV row, a JSON body) into a checked `CustomerRecord`: the one
parser behind the CSV import and the API, so both accept and refuse the same things."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_core.records import (
    MAX_MONEY_CENTS,
    CustomerRecord,
    FieldError,
    RecordErrors,
    cents_to_units,
    parse_customer,
)


def parse(**fields: Any) -> CustomerRecord:
    return parse_customer({"external_id": "CRM-1", **fields}, "US")


def errors_of(fields: dict[str, Any], region: str = "US") -> list[FieldError]:
    with pytest.raises(RecordErrors) as caught:
        parse_customer(fields, region)
    return caught.value.errors


def test_minimal_record_has_only_the_external_id() -> None:
    assert parse_customer({"external_id": " CRM-1 "}, "US") == CustomerRecord(external_id="CRM-1")


@pytest.mark.parametrize("fields", [{}, {"external_id": ""}, {"external_id": "   "}])
def test_external_id_is_required(fields: dict[str, Any]) -> None:
    assert errors_of(fields) == [FieldError("external_id", "is required")]


def test_external_id_too_long_is_refused_with_its_own_reason() -> None:
    assert errors_of({"external_id": "x" * 256}) == [
        FieldError("external_id", "longer than 255 characters")
    ]


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("1234.5", 123450),
        ("1,234.56", 123456),
        ("12", 1200),
        (" 0.99 ", 99),
        ("0", 0),
        ("1,234,567.00", 123456700),
        ("9999999999999.99", 999_999_999_999_999),
    ],
)
def test_money_is_parsed_to_cents(text: str, cents: int) -> None:
    assert parse(revenue=text).revenue_cents == cents


def test_money_from_json_numbers_is_parsed_to_cents() -> None:
    record = parse(revenue=12, cost_to_serve=3.5)
    assert (record.revenue_cents, record.cost_to_serve_cents) == (1200, 350)


def test_every_money_field_is_parsed() -> None:
    record = parse(revenue="10", cost_to_serve="2.5", potential_value="1,000.00")
    assert (record.revenue_cents, record.cost_to_serve_cents, record.potential_value_cents) == (
        1000,
        250,
        100000,
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("-1", "must not be negative"),
        ("12,5", "'12,5' is not an amount like 1234.56 (or 1,234.56)"),
        ("ten", "'ten' is not an amount like 1234.56 (or 1,234.56)"),
        ("NaN", "must be a finite number"),
        ("Infinity", "must be a finite number"),
        ("10000000000000", "is implausibly large (at most 9,999,999,999,999.99)"),
        ("0.999", "has more than 2 decimals"),
    ],
)
def test_bad_money_is_refused(text: str, reason: str) -> None:
    assert errors_of({"external_id": "CRM-1", "cost_to_serve": text}) == [
        FieldError("cost_to_serve", reason)
    ]


@pytest.mark.parametrize(
    "value",
    [
        10**30,
        "1" + "0" * 30,
        "1,000,000,000,000,000,000,000,000,000,000",
        "1" * 5000,
        Decimal("1" + "0" * 30),  # as the API hands it over
        1e30,
        "1E+30",
        1e13,
        "1e999999999",
    ],
)
def test_money_beyond_the_limit_is_implausibly_large_naming_the_limit(value: Any) -> None:
    # 10**30 once reached Decimal.quantize, which raises past 28 digits: a 500 on the API and a
    # whole CSV import aborted. 1e30 was "not an amount", 1e13 "implausibly large".
    assert errors_of({"external_id": "CRM-1", "revenue": value}) == [
        FieldError("revenue", "is implausibly large (at most 9,999,999,999,999.99)")
    ]


@pytest.mark.parametrize(
    "value", [1e-21, "1e-21", "0.001", "9999999999999.995", 0.1 + 0.2, Decimal("1.005")]
)
def test_money_with_more_than_cents_is_refused_not_rounded(value: Any) -> None:
    # 1e-21 was "not an amount", 0.001 silently 0.
    assert errors_of({"external_id": "CRM-1", "revenue": value}) == [
        FieldError("revenue", "has more than 2 decimals")
    ]


@pytest.mark.parametrize(("value", "cents"), [(1.5e3, 150000), ("2E+2", 20000), ("12.500", 1250)])
def test_money_in_scientific_notation_or_with_trailing_zeros_is_an_amount(
    value: Any, cents: int
) -> None:
    assert parse(revenue=value).revenue_cents == cents


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**40)
    | st.decimals(min_value=0, allow_nan=False, allow_infinity=False)
    | st.from_regex(r"\A\d{1,60}(\.\d{1,60})?\Z")
)
def test_any_amount_is_cents_within_the_limit_or_a_field_error(value: Any) -> None:
    errors: list[FieldError] = []
    try:
        cents = parse(revenue=value).revenue_cents
    except RecordErrors as e:
        errors, cents = e.errors, None
    if cents is None:
        assert [error.field for error in errors] == ["revenue"]
    else:
        assert 0 <= cents < MAX_MONEY_CENTS


def test_boolean_money_is_refused() -> None:
    assert errors_of({"external_id": "CRM-1", "revenue": True}) == [
        FieldError("revenue", "must be a number")
    ]


@pytest.mark.parametrize("text", ["1.234,56", "1,2,3.4"])
def test_money_with_misplaced_thousands_separators_is_refused(text: str) -> None:
    errors = errors_of({"external_id": "CRM-1", "revenue": text})
    assert [e.field for e in errors] == ["revenue"]


def test_country_is_upper_cased() -> None:
    assert parse(country="es").country == "ES"


@pytest.mark.parametrize("text", ["XX", "UK", "ESP"])
def test_unknown_country_is_refused(text: str) -> None:
    assert errors_of({"external_id": "CRM-1", "country": text}) == [
        FieldError("country", f"{text!r} is not an ISO 3166 alpha-2 country code")
    ]


@pytest.mark.parametrize(("text", "language"), [("es", "es"), ("EN", "en"), ("pt_BR", "pt")])
def test_language_is_the_lower_case_primary_subtag(text: str, language: str) -> None:
    assert parse(language=text).language == language


@pytest.mark.parametrize("text", ["zz", "eng", "klingon"])
def test_unknown_language_is_refused(text: str) -> None:
    assert errors_of({"external_id": "CRM-1", "language": text}) == [
        FieldError("language", f"{text!r} is not an ISO 639-1 language code")
    ]


def test_iana_timezone_is_kept() -> None:
    assert parse(timezone="America/Argentina/Buenos_Aires").timezone == (
        "America/Argentina/Buenos_Aires"
    )


@pytest.mark.parametrize("text", ["Mars/Olympus_Mons", "europe/madrid", "GMT+25"])
def test_unknown_timezone_is_refused(text: str) -> None:
    assert errors_of({"external_id": "CRM-1", "timezone": text}) == [
        FieldError("timezone", f"{text!r} is not an IANA time zone")
    ]


def test_name_is_trimmed() -> None:
    assert parse(name="  Ana García ").name == "Ana García"


def test_name_over_200_characters_is_refused() -> None:
    assert errors_of({"external_id": "CRM-1", "name": "x" * 201}) == [
        FieldError("name", "longer than 200 characters")
    ]


def test_identities_are_normalised() -> None:
    record = parse(email="Ana@Example.COM", phone="(415) 555-2671", telegram="0042")
    assert record.identities() == [
        ("external", "CRM-1"),
        ("email", "ana@example.com"),
        ("phone", "+14155552671"),
        ("telegram", "42"),
    ]


def test_bad_identity_is_refused_under_its_field() -> None:
    errors = errors_of({"external_id": "CRM-1", "telegram": "@ana"})
    assert errors == [FieldError("telegram", "must be the numeric Telegram user id")]


def test_phone_uses_the_row_country_as_region() -> None:
    assert parse(country="ES", phone="612 34 56 78").phone == "+34612345678"


def test_phone_without_country_uses_the_default_region() -> None:
    record = parse_customer({"external_id": "CRM-1", "phone": "612 34 56 78"}, "ES")
    assert record.phone == "+34612345678"


def test_national_phone_from_another_country_is_refused() -> None:
    errors = errors_of({"external_id": "CRM-1", "country": "US", "phone": "612 34 56 78"}, "ES")
    assert [e.field for e in errors] == ["phone"]


def test_extra_columns_become_attributes() -> None:
    record = parse(loyalty_card=" GOLD-7 ", segment="students", visits=3)
    assert record.attributes == {"loyalty_card": "GOLD-7", "segment": "students", "visits": 3}


def test_empty_cells_mean_not_given() -> None:
    blank = {
        "name": "",
        "email": " ",
        "phone": "",
        "telegram": "",
        "country": "",
        "timezone": " ",
        "language": "",
        "revenue": "",
        "cost_to_serve": None,
        "potential_value": "  ",
        "notes": "",
        "segment": None,
    }
    assert parse(**blank) == CustomerRecord(external_id="CRM-1")


def test_every_field_error_is_reported_together_in_column_order() -> None:
    errors = errors_of(
        {
            "external_id": "",
            "name": "x" * 201,
            "country": "XX",
            "email": "not-an-email",
            "phone": "123",
            "telegram": "@ana",
            "timezone": "Nowhere/Land",
            "language": "zz",
            "revenue": "-1",
            "cost_to_serve": "12,5",
            "potential_value": "NaN",
        }
    )
    assert [e.field for e in errors] == [
        "external_id",
        "name",
        "country",
        "email",
        "phone",
        "telegram",
        "timezone",
        "language",
        "revenue",
        "cost_to_serve",
        "potential_value",
    ]


def test_record_errors_message_lists_every_error() -> None:
    with pytest.raises(RecordErrors) as caught:
        parse_customer({"external_id": "CRM-1", "country": "XX", "revenue": "-1"}, "US")
    assert str(caught.value) == (
        "country: 'XX' is not an ISO 3166 alpha-2 country code; revenue: must not be negative"
    )


@pytest.mark.parametrize(("cents", "units"), [(123400, 1234), (123450, 1234.5), (1, 0.01), (0, 0)])
def test_cents_to_units_keeps_whole_units_integral(cents: int, units: float) -> None:
    converted = cents_to_units(cents)
    assert converted == units
    assert isinstance(converted, int) == (cents % 100 == 0)


@pytest.mark.parametrize("column", ["name", "notes"])
def test_nul_character_is_refused(column: str) -> None:
    errors = errors_of({"external_id": "CRM-1", column: "Ana\x00García"})
    assert [e.field for e in errors] == [column]
