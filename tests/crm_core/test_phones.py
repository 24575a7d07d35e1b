"""Reading stored phone identities back: numbers in E.164 are numbers, anything else (a short
code's or a sender id's address kept as written) is not, and nothing raises."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crm_core.phones import dialable, is_dialable


def test_a_number_in_e164_is_dialable() -> None:
    number = dialable("+14155552671")
    assert number is not None
    assert (number.country_code, number.national_number) == (1, 4155552671)


def test_an_address_kept_as_written_is_not() -> None:
    for written in ("22395", "ACME", "My Bank", "+1 (212) 555-0100", "+", "", "+0123"):
        assert not is_dialable(written), written


@given(st.text(max_size=40))
def test_any_stored_value_is_read_without_raising(value: str) -> None:
    assert is_dialable(value) in (True, False)
