"""TF-IDF rows of many texts at once, from a fitted character n-gram vectoriser, read by hand.

The intent model and the FAQ both weigh a message's character n-grams inside word boundaries
(scikit-learn's `char_wb`) by a fitted vocabulary and idf. Two things make that cheap:

* A `char_wb` text's n-grams are its words' n-grams one after another, so the columns a word
  lights up are worked out once per word and kept (`WordColumns`, a bounded cache): customers
  use the same few thousand words, and one message's analysis is a few list extensions.
* The counting and the arithmetic of a whole batch (counts, sublinear tf, idf, an L2 norm per
  row) are a handful of numpy calls over every message's columns together (`tfidf_rows`), not a
  dictionary step per n-gram and a dozen small calls per message, whose fixed cost is most of
  the work for one short text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = ["Rows", "WordColumns", "tfidf_rows"]

WORD_CACHE = 65_536  # words whose columns are kept: a customer vocabulary, not an attack's


class WordColumns:
    """The vocabulary columns of a text's n-grams, one per occurrence, each word's cached.

    `analyse` must be the fitted vectoriser's analyser for *one word*: the concatenation of its
    answers over a text's whitespace-separated words must be its answer for the text (true of
    `char_wb` analysers whose preprocessing, if any, leaves an already preprocessed word alone).
    """

    def __init__(self, analyse: Callable[[str], list[str]], vocabulary: Mapping[str, int]):
        self._analyse = analyse
        self._vocabulary = vocabulary
        self._of_word = lru_cache(maxsize=WORD_CACHE)(self._word)

    def _word(self, word: str) -> tuple[int, ...]:
        vocabulary = self._vocabulary
        found = (vocabulary.get(gram) for gram in self._analyse(word))
        return tuple(column for column in found if column is not None)

    def columns(self, text: str) -> list[int]:
        """The column of each of the text's n-grams, repeats kept (unknown n-grams left out):
        counting them is `tfidf_rows`'s, for a whole batch at once."""
        found: list[int] = []
        of_word = self._of_word
        for word in text.split():
            found.extend(of_word(word))
        return found


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
    columns: Sequence[Sequence[int]],
    idf: NDArray[Any],
    *,
    sublinear: bool = True,
    dtype: type[np.floating[Any]] = np.float64,
) -> Rows:
    """TfidfTransformer's weighting of many texts at once, from each text's n-gram columns (one
    per occurrence): the counts, (1 + log tf if sublinear) x idf, each row scaled to unit length
    (a row with no known column stays empty). A row's columns come out in ascending order.

    The counting is one sort of the batch's (text, column) pairs, in compiled code, where
    counting each text in a dictionary cost a Python step per n-gram."""
    texts = len(columns)
    lengths = np.fromiter(map(len, columns), np.intp, texts)
    flat = np.fromiter(chain.from_iterable(columns), np.intp, int(lengths.sum()))
    width = len(idf)
    # One key per (text, column): sorting them groups each text's n-grams by column, text by text.
    pairs = np.repeat(np.arange(texts), lengths) * width + flat
    keys, counts = np.unique(pairs, return_counts=True)
    owner, found = np.divmod(keys, width)
    starts = np.searchsorted(owner, np.arange(texts + 1))
    tf = counts.astype(dtype)
    if sublinear:
        tf = np.log(tf) + dtype(1.0)
    weights = (tf * idf[found]).astype(dtype, copy=False)
    norms = np.sqrt(np.bincount(owner, weights=weights * weights, minlength=texts))
    weights /= norms[owner].astype(dtype, copy=False)
    return Rows(starts.astype(np.intp, copy=False), found, weights)
