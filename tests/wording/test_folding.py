"""One folding for the bot, the FAQ and the keywords."""

from __future__ import annotations

import unicodedata

from hypothesis import example, given
from hypothesis import strategies as st

from consent.keywords import classify
from dialog.faq import fold as fold_words
from wording import fold


def test_case_and_accents_go() -> None:
    assert fold("¿Cuándo ABRÍS?") == "¿cuando abris?"
    assert fold("ＳＴＯＰ") == "stop"
    assert fold("İstanbul") == "istanbul"
    assert fold("Straße") == "strasse"


@given(st.text())
@example("ℌola")
@example("İ")
@example("ǅ")
def test_folding_is_idempotent_and_leaves_no_marks_or_capitals(text: str) -> None:
    folded = fold(text)
    assert fold(folded) == folded
    assert not any(unicodedata.combining(char) for char in folded)
    assert folded.casefold() == folded


@given(st.text(alphabet="aeiounAEIOUNáéíóúñÁÉÍÓÚÑüÜ ¿?¡!", max_size=30))
def test_the_readers_agree_on_case_and_accents(text: str) -> None:
    assert fold_words(text) == fold_words(text.upper()) == fold_words(fold(text))
    assert classify(text) == classify(fold(text).upper()) or classify(text).keyword is not None
