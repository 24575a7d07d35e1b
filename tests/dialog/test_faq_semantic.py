"""The optional semantic FAQ matcher (the `semantic` extra): the packaged sentence-embedding
model, offline, blended with the lexical retriever. CI installs the extra, so these tests run."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import cast

import numpy as np
import pytest
from numpy.typing import NDArray

import dialog.faq_semantic as faq_semantic
from bench.faq_accuracy import KB_FILE, evaluate, load_labelled
from dialog.faq import FaqIndex, build_entry, load_faq_file
from dialog.faq_semantic import (
    DEFAULT_SEMANTIC_THRESHOLD,
    SemanticFaqIndex,
    embed,
    load_model,
    semantic_available,
)


@pytest.fixture(scope="module")
def index() -> SemanticFaqIndex:
    return SemanticFaqIndex(load_faq_file(KB_FILE))


def test_the_extra_is_installed_and_the_model_loads_once() -> None:
    assert semantic_available()
    assert load_model() is load_model()
    vectors = embed(["¿A qué hora abrís?", "opening hours"])
    assert vectors.shape == (2, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("¿Hasta qué hora está abierta la tienda el sábado?", "es", "opening-hours"),
        ("quiero devolver unos pantalones que compré", "es", "returns"),
        ("¿cuánto tarda en llegar un pedido a casa?", "es", "shipping-national"),
        ("what time does the shop shut on saturdays", "en", "opening-hours"),
        ("is my personal information safe with you", "en", "privacy-data"),
        ("can you tailor a suit to my measurements", "en", "made-to-measure"),
    ],
)
def test_questions_are_matched_in_both_languages(
    index: SemanticFaqIndex, text: str, language: str, expected: str
) -> None:
    match = index.match(text, language)
    assert match is not None
    assert match.entry.id == expected
    assert match.answer == match.entry.answers[language]


def test_a_question_asked_as_written_is_answered_with_confidence(
    index: SemanticFaqIndex,
) -> None:
    match = index.match("¿Hacéis trajes a medida?", "es")
    assert match is not None
    assert match.entry.id == "made-to-measure"
    assert match.confident
    assert match.score >= DEFAULT_SEMANTIC_THRESHOLD
    assert match.question == "¿Hacéis trajes a medida?"


@pytest.mark.parametrize(
    "text",
    [
        "tell me a joke",
        "cuéntame un chiste",
        "what is the capital of Australia",
        "¿se puede entrar con perro?",
        "do you sell perfume",
        "qqqq xzxz",
    ],
)
def test_questions_the_kb_does_not_answer_are_not_confident(
    index: SemanticFaqIndex, text: str
) -> None:
    match = index.match(text, "en")
    assert match is None or not match.confident


@pytest.mark.parametrize("text", ["", "   ", "¿?!"])
def test_text_without_a_word_matches_nothing(index: SemanticFaqIndex, text: str) -> None:
    assert index.match(text, "en") is None
    assert index.top(text, "en") == []


def test_held_out_accuracy_is_at_least_the_lexical_matchers(index: SemanticFaqIndex) -> None:
    """The issue's gate (top-1 >= 85%), no worse than the default matcher, and no confident
    answer to a question the KB cannot answer."""
    questions = load_labelled()
    # evaluate() is typed for FaqIndex; SemanticFaqIndex has the same interface.
    semantic = evaluate(cast(FaqIndex, index), questions)
    lexical = evaluate(FaqIndex(load_faq_file(KB_FILE)), questions)
    misses = [(q.text, got) for q, got, _ in semantic.misses]
    assert semantic.top1_rate >= 0.85, misses
    assert semantic.top1_rate >= lexical.top1_rate, misses
    assert semantic.top3_rate >= 0.95
    assert semantic.false_confident == 0, misses
    assert semantic.confident_precision >= 0.99


def test_top_lists_distinct_entries_best_first(index: SemanticFaqIndex) -> None:
    top = index.top("can I change the size of a shirt I bought", "en", k=3)
    assert len(top) == 3
    assert len({m.entry.id for m in top}) == 3
    assert [m.score for m in top] == sorted((m.score for m in top), reverse=True)
    assert top[0].entry.id == "exchanges"
    assert index.top("opening hours", "en", k=0) == []


def test_variants_are_embedded_once_at_build_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counting(texts: Sequence[str]) -> NDArray[np.float32]:
        calls.append(len(texts))
        return embed(texts)

    monkeypatch.setattr(faq_semantic, "embed", counting)
    entries = load_faq_file(KB_FILE)
    index = SemanticFaqIndex(entries)
    variants = sum(len(qs) for e in entries for qs in e.questions.values())
    assert calls == [variants]  # every variant, in one batch
    for text in ("opening hours on sunday", "¿dónde está la tienda?", "gift cards"):
        assert index.match(text, "en") is not None
    assert index.top("opening hours", "es", k=3)
    assert calls == [variants, 1, 1, 1, 1]  # then the question alone, once per match


def test_the_threshold_decides_confidence() -> None:
    entry = build_entry("hours", {"en": ["opening hours"]}, {"en": "9 to 5."})
    question = "what are the opening hours of the shop"
    lenient = SemanticFaqIndex([entry], threshold=0.0).match(question, "en")
    strict = SemanticFaqIndex([entry], threshold=1.0).match(question, "en")
    assert lenient is not None
    assert lenient.confident
    assert strict is not None
    assert not strict.confident
    with pytest.raises(ValueError, match="threshold"):
        SemanticFaqIndex([entry], threshold=1.5)


def test_an_empty_index_matches_nothing() -> None:
    empty = SemanticFaqIndex([])
    assert len(empty) == 0
    assert empty.match("opening hours", "en") is None
    assert empty.top("opening hours", "en") == []


def test_a_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    faq_semantic._model.cache_clear()  # the next load_model() loads the model again
    with pytest.raises(ImportError, match=r"pip install 'sastre\[semantic\]'"):
        load_model()
    monkeypatch.undo()
    assert load_model() is load_model()
