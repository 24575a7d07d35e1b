"""TF-IDF rows by hand, word by word: the same numbers as scikit-learn's vectoriser."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer

from dialog.ngrams import WordColumns, tfidf_rows

CORPUS = [
    "¿cuál es el horario de la tienda?",
    "what time do you open on saturday",
    "how much is shipping to the us",
    "dónde está mi pedido",
    "hola hola buenos días",
]


@pytest.fixture(scope="module")
def vectoriser() -> TfidfVectorizer:
    fitted = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)
    fitted.fit(CORPUS)
    return fitted


@given(st.lists(st.text(alphabet="abcdeíñ? \t\n", max_size=40), max_size=6))
def test_rows_are_scikit_learns(texts: list[str]) -> None:
    fitted = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)
    fitted.fit(CORPUS)
    columns = WordColumns(fitted.build_analyzer(), fitted.vocabulary_)
    rows = tfidf_rows([columns.columns(text) for text in texts], fitted.idf_)
    expected = fitted.transform(texts).toarray() if texts else np.zeros((0, len(fitted.idf_)))
    got = np.zeros_like(expected)
    for r in range(len(texts)):
        span = slice(rows.starts[r], rows.starts[r + 1])
        got[r, rows.columns[span]] = rows.weights[span]
    assert got == pytest.approx(expected, abs=1e-12)


def test_a_words_columns_are_counted_each_time_it_appears(vectoriser: TfidfVectorizer) -> None:
    columns = WordColumns(vectoriser.build_analyzer(), vectoriser.vocabulary_)
    once, twice = columns.columns("hola"), columns.columns("hola  hola")
    assert once
    assert twice == once + once
    assert columns.columns("") == []
    assert columns.columns("qqqq") == []


def test_a_rows_columns_are_counted_once_each_in_ascending_order(
    vectoriser: TfidfVectorizer,
) -> None:
    columns = WordColumns(vectoriser.build_analyzer(), vectoriser.vocabulary_)
    texts = ["hola hola buenos", "", "qqqq", "tienda hola"]
    rows = tfidf_rows([columns.columns(text) for text in texts], vectoriser.idf_)
    for r, text in enumerate(texts):
        found = rows.columns[rows.starts[r] : rows.starts[r + 1]]
        assert list(found) == sorted(set(columns.columns(text)))
    assert rows.nonempty()[0].tolist() == [True, False, False, True]
