"""Whatever a preferences change holds, it is applied or refused naming its field: never
another exception (a 500 for the API and the preference centre)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from consent.preferences import ContactPreferences, InvalidPreferences, apply_changes

KEYS = ("channels", "window", "language", "timezone", "topics")
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["09:00", "18:30", "mon", "sms", "es", "Europe/Madrid", "9" * 20 + ":00"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
windows = st.dictionaries(st.sampled_from(["days", "start", "end"]), json_values)
changes = st.dictionaries(st.sampled_from(KEYS), json_values | windows, max_size=3)


@given(changes)
@example({"window": {"days": None, "start": "09:00", "end": "18:00"}})
@example({"window": {"days": 1, "start": "09:00", "end": "18:00"}})
@example({"window": {"start": "99999999999999999999:00", "end": "18:00"}})
@example({"window": {"start": "09:99999999999999999999", "end": "18:00"}})
@example({"timezone": []})
@example({"timezone": {}})
def test_any_change_is_applied_or_refused_naming_its_field(given_changes: dict[str, Any]) -> None:
    refused = _refusal(given_changes)
    assert refused is None or refused.field.split(".")[0] in KEYS


def _refusal(given_changes: dict[str, Any]) -> InvalidPreferences | None:
    try:
        apply_changes(ContactPreferences(), given_changes)
    except InvalidPreferences as refused:
        return refused
    return None


@pytest.mark.parametrize("days", [None, 1, "monday", {"mon": True}])
def test_days_that_are_not_a_list_are_refused(days: object) -> None:
    window = {"days": days, "start": "09:00", "end": "18:00"}
    with pytest.raises(InvalidPreferences, match="must be a list of days") as refused:
        apply_changes(ContactPreferences(), {"window": window})
    assert refused.value.field == "window.days"
