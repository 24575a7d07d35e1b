"""A long text in parts that each fit the medium, cut where a reader would pause."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialog.text_parts import text_parts

WORDS = st.text(st.characters(codec="utf-8"), max_size=3000)


@given(text=WORDS, limit=st.integers(min_value=1, max_value=400))
def test_every_part_fits_and_nothing_but_whitespace_is_lost(text: str, limit: int) -> None:
    parts = text_parts(text, limit)
    assert all(0 < len(part) <= limit for part in parts)
    assert all(part == part.strip() for part in parts)
    assert "".join("".join(parts).split()) == "".join(text.split())


@given(text=WORDS, limit=st.integers(min_value=1, max_value=4000))
def test_a_text_that_fits_is_one_part(text: str, limit: int) -> None:
    if len(text.strip()) <= limit:
        assert text_parts(text, limit) == ([text.strip()] if text.strip() else [])


def test_a_part_ends_at_the_last_paragraph_that_fits() -> None:
    first = "Devoluciones: tienes 30 días. " * 4
    second = "Para devolver un pedido, entra en tu cuenta y elige el pedido. " * 3
    parts = text_parts(f"{first}\n\n{second}", 200)
    assert parts[0] == first.strip()
    assert parts[1].startswith("Para devolver")


def test_without_a_paragraph_a_part_ends_with_a_sentence() -> None:
    text = "Una frase corta. " * 20
    parts = text_parts(text, 100)
    assert all(part.endswith(".") for part in parts)


def test_a_word_longer_than_a_part_is_cut_where_the_part_is_full() -> None:
    assert text_parts("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        text_parts("hola", 0)
