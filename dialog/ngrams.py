"""TF-IDF rows of many texts at once, from a fitted character n-gram vectoriser, read by hand.

The intent model and the FAQ both weigh a message's character n-grams inside word boundaries
(scikit-learn's `char_wb`) by a fitted vocabulary and idf. Two things make that cheap:

* A `char_wb` text's n-grams are its words' n-grams one after another, so the columns a word
  lights up are worked out once per word and kept (`WordColumns`, a bounded cache): customers
  use the same few thousand words, and one message's analysis is a few dictionary merges.
* The arithmetic of a whole batch (sublinear tf, idf, an L2 norm per row) is a handful of numpy
  calls over every message's columns together (`tfidf_rows`), not a dozen small calls per
  message, whose fixed cost is most of the work for one short text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = ["Rows", "WordColumns", "tfidf_rows"]

WORD_CACHE = 65_536  # words whose columns are kept: a customer vocabulary, not an attack's


class WordColumns:
    """The vocabulary columns of a text's n-grams, counted, with each word's columns cached.

    `analyse` must be the fitted vectoriser's analyser for *one word*: the concatenation of its
    answers over a text's whitespace-separated words must be its answer for the text (true of
    `char_wb` analysers whose preprocessing, if any, leaves an already preprocessed word alone).
    """

    def __init__(self, analyse: Callable[[str], list[str]], vocabulary: Mapping[str, int]):
        self._analyse = analyse
        self._vocabulary = vocabulary
        self._of_word = lru_cache(maxsize=WORD_CACHE)(self._word)

    def _word(self, word: str) -> tuple[tuple[int, int], ...]:
        counts: dict[int, int] = {}
        vocabulary = self._vocabulary
        for gram in self._analyse(word):
            column = vocabulary.get(gram)
            if column is not None:
                counts[column] = counts.get(column, 0) + 1
        return tuple(counts.items())

    def counts(self, text: str) -> dict[int, int]:
        """column -> how many of the text's n-grams fall in it (unknown n-grams left out)."""
        total: dict[int, int] = {}
        of_word = self._of_word
        for word in text.split():
            for column, count in of_word(word):
                total[column] = total.get(column, 0) + count
        return total


class Rows(NamedTuple):
    """Sparse rows, one per text, laid out as CSR: row r holds columns[starts[r]:starts[r+1]]."""

    starts: NDArray[np.intp]  # len(texts) + 1 offsets
    columns: NDArray[np.intp]
    weights: NDArray[Any]

    def nonempty(self) -> tuple[NDArray[np.bool_], NDArray[np.intp]]:
        """Which rows hold anything, and where each of those begins (for `np.add.reduceat`)."""
        filled = self.starts[1:] > self.starts[:-1]
        return filled, self.starts[:-1][filled]


def tfidf_rows(
    counts: Sequence[Mapping[int, int]],
    idf: NDArray[Any],
    *,
    sublinear: bool = True,
    dtype: type[np.floating[Any]] = np.float64,
) -> Rows:
    """TfidfTransformer's weighting of many count rows at once: (1 + log tf if sublinear) x idf,
    each row scaled to unit length (a row with no known column stays empty)."""
    lengths = np.fromiter((len(row) for row in counts), np.intp, len(counts))
    starts = np.zeros(len(counts) + 1, np.intp)
    np.cumsum(lengths, out=starts[1:])
    size = int(starts[-1])
    columns = np.fromiter((c for row in counts for c in row), np.intp, size)
    tf = np.fromiter((n for row in counts for n in row.values()), dtype, size)
    if sublinear:
        tf = np.log(tf) + dtype(1.0)
    weights = (tf * idf[columns]).astype(dtype, copy=False)
    owner = np.repeat(np.arange(len(counts)), lengths)
    norms = np.sqrt(np.bincount(owner, weights=weights * weights, minlength=len(counts)))
    weights /= norms[owner].astype(dtype, copy=False)
    return Rows(starts, columns, weights)
