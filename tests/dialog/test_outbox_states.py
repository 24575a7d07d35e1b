"""Delivery states never move backwards, whatever order the reports come in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dialog.outbox.states import TERMINAL, DeliveryState, advance, rank

states = st.sampled_from(list(DeliveryState))


@given(st.lists(states, max_size=12))
def test_a_sequence_of_reports_only_moves_forward(reports: list[DeliveryState]) -> None:
    current = DeliveryState.QUEUED
    for report in reports:
        moved = advance(current, report)
        if moved is not None:
            assert rank(moved) > rank(current) or moved in TERMINAL
            assert current not in TERMINAL
            current = moved


@given(states, states)
def test_a_terminal_state_is_final(terminal: DeliveryState, report: DeliveryState) -> None:
    if terminal in TERMINAL:
        assert advance(terminal, report) is None


@given(st.permutations([DeliveryState.SENT, DeliveryState.DELIVERED, DeliveryState.READ]))
def test_callbacks_out_of_order_end_on_the_furthest(order: list[DeliveryState]) -> None:
    current = DeliveryState.SENDING
    for report in order:
        current = advance(current, report) or current
    assert current is DeliveryState.READ


def test_a_failure_after_delivery_is_stale() -> None:
    assert advance(DeliveryState.DELIVERED, DeliveryState.UNDELIVERED) is None
    assert advance(DeliveryState.SENT, DeliveryState.UNDELIVERED) is DeliveryState.UNDELIVERED


def test_the_same_report_twice_changes_nothing() -> None:
    assert advance(DeliveryState.SENT, DeliveryState.SENT) is None
