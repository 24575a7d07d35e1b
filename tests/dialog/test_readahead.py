"""Reading ahead (`dialog.readahead`): taken once, bounded, and never a different answer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache

from hypothesis import given
from hypothesis import strategies as st

from dialog.faq import FaqIndex, load_faq_file
from dialog.nlu import EmbeddedUnderstander, Reading
from dialog.readahead import ReadAhead
from sastre.dialogs import SHIPPED_FAQ


class Lengths:
    """Computes len(text), counting the texts it was asked to compute."""

    def __init__(self) -> None:
        self.computed: list[str] = []

    def __call__(self, texts: Sequence[str]) -> list[int]:
        self.computed.extend(texts)
        return [len(text) for text in texts]


def test_what_was_read_ahead_is_not_computed_again() -> None:
    lengths = Lengths()
    ahead = ReadAhead(lengths)
    ahead.fill(["hola", "hi there"])
    assert ahead.take_all(["hi there", "new", "hola"]) == [8, 3, 4]
    assert lengths.computed == ["hola", "hi there", "new"]
    assert len(ahead) == 0


def test_a_value_is_taken_once() -> None:
    lengths = Lengths()
    ahead = ReadAhead(lengths)
    ahead.fill(["hola"])
    ahead.take_all(["hola"])
    ahead.take_all(["hola"])
    assert lengths.computed == ["hola", "hola"]  # not a cache: asked again, computed again


def test_a_text_queued_twice_is_read_twice_and_taken_twice() -> None:
    lengths = Lengths()
    ahead = ReadAhead(lengths)
    ahead.fill(["hola", "hola"])
    assert ahead.take_all(["hola", "hola"]) == [4, 4]
    assert lengths.computed == ["hola", "hola"]


def test_what_is_never_taken_is_dropped_oldest_first() -> None:
    lengths = Lengths()
    ahead = ReadAhead(lengths, capacity=3)
    ahead.fill(["a", "bb", "ccc", "dddd"])
    assert len(ahead) == 3
    ahead.take_all(["a", "dddd"])
    assert lengths.computed == ["a", "bb", "ccc", "dddd", "a"]


@cache
def _understander() -> EmbeddedUnderstander:
    return EmbeddedUnderstander()


@cache
def _faq() -> FaqIndex:
    return FaqIndex(load_faq_file(SHIPPED_FAQ))


_TEXTS = st.lists(
    st.one_of(
        st.sampled_from(["¿a qué hora abrís?", "where is my order SO-482913", "hola", "STOP"]),
        st.text(max_size=40),
    ),
    min_size=1,
    max_size=6,
)


@given(_TEXTS, st.integers(min_value=0, max_value=6))
def test_understanding_is_the_same_read_ahead_or_not(texts: list[str], ahead: int) -> None:
    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    readings = [Reading(text, "Europe/Madrid", now, "es") for text in texts]
    understander = _understander()
    expected = understander.understand_all(readings)
    understander.read_ahead(texts[:ahead])
    assert understander.understand_all(readings) == expected


@given(_TEXTS, st.integers(min_value=0, max_value=6))
def test_faq_matches_are_the_same_read_ahead_or_not(texts: list[str], ahead: int) -> None:
    index = _faq()
    languages = ["es" if n % 2 else "en" for n in range(len(texts))]
    expected = index.match_all(texts, languages)
    index.read_ahead(texts[:ahead])
    assert index.match_all(texts, languages) == expected
