"""Options offered when torn: how they read on each channel, and which one a message picks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialog.choices import (
    PendingChoice,
    label_of,
    option_action,
    option_entry,
    pick,
    picks_offered,
    render,
)
from dialog.faq import FaqEntry

LABELS = ("How do I return an item?", "Can I exchange a size?", "The status of one of my orders")
ENTRIES = {
    "returns": FaqEntry(
        "returns",
        {"es": ("¿Cómo devuelvo un artículo?",), "en": ("How do I return an item?",)},
        {"es": "Devoluciones.", "en": "Returns."},
    ),
    "hours": FaqEntry("hours", {"en": ("When do you open?",)}, {"en": "10 to 8."}),
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 0),
        ("2.", 1),
        (" 3 ", 2),
        ("la 2", 1),
        ("opción 3", 2),
        ("option 1", 0),
        ("#2", 1),
        ("la segunda", 1),
        ("the first one", 0),
        ("4", None),  # no such option
        ("0", None),
    ],
)
def test_a_number_picks_its_option(text: str, expected: int | None) -> None:
    assert pick(text, LABELS) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("return an item", 0),
        ("exchange", 1),
        ("cambiar la talla", None),  # words of no label offered
        ("the status of my order", 2),
        ("my orders", 2),
        ("what time do you open on sunday?", None),  # a new question
        ("", None),
    ],
)
def test_words_pick_the_option_they_clearly_name(text: str, expected: int | None) -> None:
    assert pick(text, LABELS) == expected


@pytest.mark.parametrize("text", ["sí", "Sí, gracias", "yes", "vale", "that's it"])
def test_a_yes_picks_the_only_option_offered(text: str) -> None:
    assert pick(text, LABELS[:1]) == 0
    assert pick(text, LABELS) is None  # which one?


def test_words_matching_two_labels_alike_pick_neither() -> None:
    assert pick("size", ("Size guide", "Sizes in store")) is None


@given(st.text(max_size=40))
def test_a_pick_is_always_one_of_the_options_or_none(text: str) -> None:
    picked = pick(text, LABELS)
    assert picked is None or 0 <= picked < len(LABELS)


def test_by_sms_the_options_are_numbered_under_the_question() -> None:
    assert render("en", LABELS[:2], buttons=False).splitlines() == [
        "Did you mean…?",
        "1. How do I return an item?",
        "2. Can I exchange a size?",
        "Reply with the number, or tell me in other words what you need.",
    ]


def test_with_buttons_the_question_stands_alone() -> None:
    assert render("es", LABELS, buttons=True) == "¿Te refieres a…?"


def test_labels_come_from_the_entry_in_the_language_or_the_catalogue() -> None:
    assert label_of("faq:returns", "es", ENTRIES) == "¿Cómo devuelvo un artículo?"
    assert label_of("faq:hours", "es", ENTRIES) == "When do you open?"  # the only one it has
    assert (
        label_of("action:action_order_status", "es", ENTRIES) == "El estado de uno de mis pedidos"
    )
    assert label_of("faq:gone", "en", ENTRIES) is None
    assert label_of("action:action_unknown", "en", ENTRIES) is None


def test_options_name_an_entry_or_an_action() -> None:
    assert (option_entry("faq:returns"), option_action("faq:returns")) == ("returns", None)
    assert option_action("action:action_opt_out") == "action_opt_out"
    assert option_entry("rephrase") is None


def test_a_pending_choice_survives_the_conversations_flags() -> None:
    pending = PendingChoice(
        ("faq:returns", "action:action_order_status"),
        LABELS[::2],
        "no me queda bien",
        "es",
        42,
        ({"entity": "order_number", "value": "SO-1", "text": "SO-1"},),
    )
    assert PendingChoice.of(pending.to_slot()) == pending


@pytest.mark.parametrize(
    "slot",
    [None, "choice", {}, {"options": ["faq:a"], "labels": []}, {"options": "x", "labels": "y"}],
)
def test_a_slot_holding_no_valid_choice_reads_as_none(slot: object) -> None:
    assert PendingChoice.of(slot) is None


def test_only_an_offered_label_word_for_word_is_a_pick_before_keywords_are_read() -> None:
    offered = PendingChoice(("faq:unsubscribe",), ("How do I unsubscribe?",), "news", "en", 1)
    flags = {"slots": {"choice": offered.to_slot()}}
    assert picks_offered(flags, "how do i unsubscribe")
    assert not picks_offered(flags, "unsubscribe me")
    assert not picks_offered({}, "How do I unsubscribe?")
