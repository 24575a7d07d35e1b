"""The reason a phone number is refused names the number's own country, not the default's."""

from __future__ import annotations

import pytest

from crm_core.identities import InvalidIdentity, normalise_phone


@pytest.mark.parametrize(
    ("number", "country"),
    [("+447700900123", "GB"), ("+3461234", "ES"), ("+80012345", "+800"), ("2125", "US")],
)
def test_an_invalid_number_is_refused_naming_its_own_country(number: str, country: str) -> None:
    with pytest.raises(InvalidIdentity) as refused:
        normalise_phone(number, "US")
    assert refused.value.reason.endswith(f"is not a valid number in {country}")
