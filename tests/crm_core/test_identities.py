"""Normalising identity values: one person written two ways is one identity, and a value that
cannot be an identity is refused with a reason a person can act on."""

from __future__ import annotations

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_core import IdentityKind, InvalidIdentity, normalise
from crm_core.identities import _fast_e164, normalise_email, normalise_phone


def test_email_is_lower_cased_and_trimmed() -> None:
    assert normalise(IdentityKind.EMAIL, "  Ana.Garcia@Example.COM ", "US") == (
        "ana.garcia@example.com"
    )


def test_email_domain_is_idna_encoded() -> None:
    assert normalise_email("x@Bücher.DE") == "x@xn--bcher-kva.de"


def test_email_written_two_ways_is_one_identity() -> None:
    assert normalise_email("X@bücher.de") == normalise_email("x@XN--BCHER-KVA.DE")


@pytest.mark.parametrize(
    ("value", "reason_mentions"),
    [
        ("ana.example.com", "@-sign"),
        ("ana@localhost", "period"),
        ("ana@@example.com", "@"),
        ("ana garcia@example.com", "invalid characters"),
    ],
)
def test_invalid_email_is_refused_with_a_reason(value: str, reason_mentions: str) -> None:
    with pytest.raises(InvalidIdentity) as caught:
        normalise(IdentityKind.EMAIL, value, "US")
    assert caught.value.kind == IdentityKind.EMAIL
    assert reason_mentions in caught.value.reason


def test_national_phone_number_uses_the_region() -> None:
    assert normalise(IdentityKind.PHONE, "(415) 555-2671", "US") == "+14155552671"


@pytest.mark.parametrize("region", ["US", "ES", "GB"])
def test_phone_with_country_code_ignores_the_region(region: str) -> None:
    assert normalise_phone("+34 612 34 56 78", region) == "+34612345678"


def test_same_national_number_differs_by_region() -> None:
    assert normalise_phone("612 34 56 78", "ES") == "+34612345678"
    with pytest.raises(InvalidIdentity, match="not a valid number in US"):
        normalise_phone("612 34 56 78", "US")


@pytest.mark.parametrize(
    ("value", "reason_mentions"),
    [
        ("call me", "not a phone number"),
        ("123", "not a valid number"),
        ("+1 415 555 267", "not a valid number in US"),
    ],
)
def test_invalid_phone_is_refused_with_a_reason(value: str, reason_mentions: str) -> None:
    with pytest.raises(InvalidIdentity) as caught:
        normalise(IdentityKind.PHONE, value, "US")
    assert caught.value.kind == IdentityKind.PHONE
    assert reason_mentions in caught.value.reason


def test_telegram_id_is_the_canonical_number() -> None:
    assert normalise(IdentityKind.TELEGRAM, " 00123456789 ", "US") == "123456789"


@pytest.mark.parametrize("value", ["0", "-5", "@ana_garcia", "12.5", "", "1e9"])
def test_telegram_must_be_a_positive_numeric_id(value: str) -> None:
    with pytest.raises(InvalidIdentity, match="numeric Telegram user id"):
        normalise(IdentityKind.TELEGRAM, value, "US")


@pytest.mark.parametrize("digits", [400, 5000])
def test_absurdly_long_telegram_id_is_refused(digits: int) -> None:
    with pytest.raises(InvalidIdentity):
        normalise(IdentityKind.TELEGRAM, "9" * digits, "US")


@pytest.mark.parametrize("value", ["abcdefgh", "A1_b2-C3" * 16, " visitor-0001 "])
def test_webchat_id_of_8_to_128_safe_characters_is_kept(value: str) -> None:
    assert normalise(IdentityKind.WEBCHAT, value, "US") == value.strip()


@pytest.mark.parametrize(
    "value", ["abc1234", "a" * 129, "visitor 0001", "visitor/0001", "ñandú-123"]
)
def test_webchat_id_of_another_shape_is_refused(value: str) -> None:
    with pytest.raises(InvalidIdentity, match="8-128 letters"):
        normalise(IdentityKind.WEBCHAT, value, "US")


def test_external_id_is_trimmed() -> None:
    assert normalise(IdentityKind.EXTERNAL, "  CRM-0042\n", "US") == "CRM-0042"


def test_external_id_keeps_its_case() -> None:
    assert normalise(IdentityKind.EXTERNAL, "AbC", "US") == "AbC"


def test_external_id_of_255_characters_is_accepted() -> None:
    assert normalise(IdentityKind.EXTERNAL, "x" * 255, "US") == "x" * 255


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("   ", "is empty"),
        ("x" * 256, "longer than 255 characters"),
        ("a\tb", "contains control characters"),
        ("a\x00b", "contains control characters"),
    ],
)
def test_bad_external_id_is_refused(value: str, reason: str) -> None:
    with pytest.raises(InvalidIdentity) as caught:
        normalise(IdentityKind.EXTERNAL, value, "US")
    assert caught.value.reason == reason


def test_unknown_kind_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(InvalidIdentity) as caught:
        normalise("fax", "+14155552671", "US")
    assert caught.value.kind == "fax"
    assert "unknown identity kind" in caught.value.reason
    assert "email, phone, telegram, webchat, external" in caught.value.reason


def test_invalid_identity_is_a_value_error_naming_the_kind() -> None:
    error = InvalidIdentity("phone", "too short")
    assert isinstance(error, ValueError)
    assert str(error) == "phone: too short"


@pytest.mark.parametrize("control", ["\x7f", "\x85"])
def test_external_id_with_del_or_c1_control_is_refused(control: str) -> None:
    with pytest.raises(InvalidIdentity, match="control characters"):
        normalise(IdentityKind.EXTERNAL, f"a{control}b", "US")


@settings(max_examples=300, deadline=None)
@given(
    address=st.one_of(
        st.emails(),
        st.builds(
            "{}@{}".format,
            st.from_regex(r"[A-Za-z0-9._%+'-]{1,70}", fullmatch=True),
            st.sampled_from(
                [
                    "example.com",
                    "EXAMPLE.org",
                    "bücher.de",
                    "localhost",
                    "foo.test",
                    "a..b.com",
                    "-x.com",
                    "x" * 64 + ".com",
                    "mail.example.co.uk",
                    "123.com",
                    "com",
                ]
            ),
        ),
    )
)
def test_the_fast_path_agrees_with_email_validator(address: str) -> None:
    """Plain addresses skip part of email-validator's work; the answer must not change."""
    try:
        checked = validate_email(address.strip(), check_deliverability=False)
        expected: str | None = f"{checked.local_part.lower()}@{checked.ascii_domain.lower()}"
    except EmailNotValidError:
        expected = None
    try:
        actual: str | None = normalise_email(address)
    except InvalidIdentity:
        actual = None
    assert actual == expected


def phonenumbers_e164(text: str, region: str) -> str | None:
    """The answer of phonenumbers' own parser and validity check: the reference."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
KINDS = [
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.TOLL_FREE,
    phonenumbers.PhoneNumberType.PREMIUM_RATE,
    phonenumbers.PhoneNumberType.VOIP,
    phonenumbers.PhoneNumberType.UAN,
]
FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
]


@st.composite
def written_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """A real example number of some region and kind, written as people write it, maybe with a
    digit changed, added or dropped, a prefix (trunk, IDD, country code) in front, and read
    with its own region or another."""
    region = draw(st.sampled_from(REGIONS))
    example = phonenumbers.example_number_for_type(region, draw(st.sampled_from(KINDS)))
    if example is None:
        example = phonenumbers.example_number(region) or phonenumbers.parse("+14155552671")
    if draw(st.booleans()):
        text = phonenumbers.format_number(example, draw(st.sampled_from(FORMATS)))
    else:
        digits = list(phonenumbers.national_significant_number(example))
        for _ in range(draw(st.integers(0, 3))):
            at = draw(st.integers(0, len(digits)))
            edit = draw(st.sampled_from(["set", "insert", "drop"]))
            digit = str(draw(st.integers(0, 9)))
            if edit == "insert" or not digits:
                digits.insert(at, digit)
            elif edit == "set":
                digits[min(at, len(digits) - 1)] = digit
            else:
                digits.pop(min(at, len(digits) - 1))
        code = str(example.country_code)
        prefix = draw(st.sampled_from(["", "0", "00", "011", "1", "+", f"+{code}", code, "+1 "]))
        separator = draw(st.sampled_from(["", " ", "-", "."]))
        text = prefix + separator.join(digits)
    reading_region = draw(st.sampled_from([region, region, "US", "GB", "ES", "MX", "AR", "IT"]))
    return text, reading_region


@settings(max_examples=3000, deadline=None)
@given(number=written_numbers())
def test_the_phone_fast_path_agrees_with_phonenumbers(number: tuple[str, str]) -> None:
    """Plainly written numbers skip phonenumbers' general parser; whenever the fast path
    answers, the answer must be phonenumbers' own."""
    text, region = number
    fast = _fast_e164(text, region)
    assert fast is None or fast == phonenumbers_e164(text, region)
    if fast is None:  # phonenumbers answers, and refuses with its own reasons
        expected = phonenumbers_e164(text, region)
        try:
            assert normalise_phone(text, region) == expected
        except InvalidIdentity:
            assert expected is None


@pytest.mark.parametrize(
    ("text", "region", "e164"),
    [
        ("(415) 555-2671", "US", "+14155552671"),
        ("+1 202 995 0953", "US", "+12029950953"),
        ("07498 569726", "GB", "+447498569726"),
        ("642 293 401", "ES", "+34642293401"),
        ("55 7056 5342", "MX", "+525570565342"),
        ("0764730829", "FR", "+33764730829"),
        ("+44 7498 907623", "US", "+447498907623"),
        ("06 12345678", "NL", "+31612345678"),
        ("02 1234 5678", "IT", "+390212345678"),
    ],
)
def test_the_phone_fast_path_answers_plainly_written_numbers(
    text: str, region: str, e164: str
) -> None:
    assert _fast_e164(text, region) == e164 == phonenumbers_e164(text, region)
