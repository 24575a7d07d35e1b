"""The FAQ knowledge base: loading files, matching, the held-out quality gate, and the stored KB
with its cached index."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray
from sklearn.feature_extraction.text import TfidfVectorizer
from sqlalchemy import func, select, update

from bench.faq_accuracy import KB_FILE, evaluate, load_labelled
from crm_core.models import AuditEntry
from dialog.faq import (
    DEFAULT_THRESHOLD,
    RANKED,
    FaqEntryInvalid,
    FaqFileError,
    FaqIndex,
    build_entry,
    fold,
    load_faq_file,
    rank_all,
)
from dialog.faq_store import (  # also registers faq_entries on the metadata
    FaqCatalogue,
    FaqRow,
    delete_entry,
    get_entry,
    load_entries,
    save_entry,
    seed_from_file,
)
from sastre.db import SessionMaker


@pytest.fixture(scope="module")
def index() -> FaqIndex:
    return FaqIndex(load_faq_file(KB_FILE))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(FaqFileError) as caught:
        load_faq_file(path)
    assert str(path) in str(caught.value)
    return [str(p) for p in caught.value.problems]


# --- the shipped knowledge base -----------------------------------------------------------------


def test_the_shipped_kb_is_complete_in_both_languages() -> None:
    entries = load_faq_file(KB_FILE)
    assert len(entries) >= 30
    for entry in entries:
        assert set(entry.answers) == {"es", "en"}, entry.id
        for language in ("es", "en"):
            # Enough ways of asking to match on; few enough that one entry cannot crowd the rest.
            assert 4 <= len(entry.questions[language]) <= 16, (entry.id, language)


def test_the_held_out_questions_are_not_copied_into_the_kb() -> None:
    variants = {fold(q) for e in load_faq_file(KB_FILE) for qs in e.questions.values() for q in qs}
    copied = [q.text for q in load_labelled() if fold(q.text) in variants]
    assert copied == []


def test_held_out_top1_accuracy_is_at_least_85_percent(index: FaqIndex) -> None:
    """The quality gate of the issue, on questions written apart from the KB."""
    questions = load_labelled()
    assert sum(q.expected is not None for q in questions) >= 150
    assert sum(q.expected is None for q in questions) >= 30
    scores = evaluate(index, questions)
    assert scores.top1_rate >= 0.85, [(q.text, got) for q, got, _ in scores.misses]


def test_confident_answers_are_nearly_always_right(index: FaqIndex) -> None:
    scores = evaluate(index, load_labelled())
    assert scores.confident_precision >= 0.97
    assert scores.false_confident_rate <= 0.05


# --- matching -----------------------------------------------------------------------------------


def test_a_spanish_question_gets_the_spanish_answer(index: FaqIndex) -> None:
    match = index.match("¿Cuánto tarda en llegar un pedido a Sevilla?", "es")
    assert match is not None
    assert match.entry.id == "shipping-national"
    assert match.answer == match.entry.answers["es"]


def test_an_english_question_gets_the_english_answer(index: FaqIndex) -> None:
    match = index.match("How do I return a jacket that doesn't fit?", "en")
    assert match is not None
    assert match.entry.id == "returns"
    assert match.answer.startswith("You have 30 days")


def test_a_question_in_one_language_is_answered_in_the_conversation_language(
    index: FaqIndex,
) -> None:
    match = index.match("do you have a student discount", "es")
    assert match is not None
    assert match.entry.id == "student-discount"
    assert match.answer == match.entry.answers["es"]


def test_an_entry_without_the_language_answers_in_the_other() -> None:
    entry = build_entry("parking", {"en": ["Is there parking?"]}, {"en": "Yes, on Calle Mayor."})
    match = FaqIndex([entry]).match("is there parking", "es")
    assert match is not None
    assert match.answer == "Yes, on Calle Mayor."


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("orario de la tienda el savado", "es", "opening-hours"),
        ("kiero devolber un pantalon", "es", "returns"),
        ("wat payment metods do u acept", "en", "payment-methods"),
        ("how do i trak my pakage", "en", "order-tracking"),
        ("GASTOS DE ENVIO", "es", "shipping-national"),
        ("tarjeta regalo valida cuanto tiempo", "es", "gift-cards"),
    ],
)
def test_typos_capitals_and_missing_accents_are_forgiven(
    index: FaqIndex, text: str, language: str, expected: str
) -> None:
    match = index.match(text, language)
    assert match is not None
    assert match.entry.id == expected


def test_a_question_asked_as_written_is_answered_with_confidence(index: FaqIndex) -> None:
    match = index.match("¿Hacéis trajes a medida?", "es")
    assert match is not None
    assert match.entry.id == "made-to-measure"
    assert match.confident
    assert match.score >= DEFAULT_THRESHOLD
    assert match.question == "¿Hacéis trajes a medida?"


@pytest.mark.parametrize(
    "text",
    [
        "tell me a joke",
        "cuéntame un chiste",
        "what is the capital of Australia",
        "¿se puede entrar con perro?",
        "do you sell perfume",
    ],
)
def test_questions_the_kb_does_not_answer_are_not_confident(index: FaqIndex, text: str) -> None:
    match = index.match(text, "en")
    assert match is None or not match.confident


@pytest.mark.parametrize("text", ["", "   ", "¿?!", "qqqq xzxz"])
def test_text_sharing_nothing_with_the_kb_matches_nothing(text: str) -> None:
    entry = build_entry("hours", {"en": ["opening hours"]}, {"en": "9 to 5."})
    assert FaqIndex([entry]).match(text, "en") is None


def test_top_lists_distinct_entries_best_first(index: FaqIndex) -> None:
    top = index.top("can I change the size of a shirt I bought", "en", k=3)
    assert len(top) == 3
    assert len({m.entry.id for m in top}) == 3
    assert [m.score for m in top] == sorted((m.score for m in top), reverse=True)
    assert top[0].entry.id == "exchanges"


def test_asking_for_more_than_is_ranked_ahead_extends_the_same_list(index: FaqIndex) -> None:
    question = "can I change the size of a shirt I bought"
    index.read_ahead([question])  # ranked ahead: RANKED entries kept
    longer = index.top(question, "en", k=RANKED + 4)
    assert len(longer) == RANKED + 4
    assert longer[:3] == index.top(question, "en", k=3)


def test_entries_scoring_the_same_rank_in_the_kbs_order() -> None:
    answers = {"en": "Yes."}
    twins = [build_entry(f"twin-{n}", {"en": ["gift wrapping"]}, answers) for n in range(12)]
    top = FaqIndex(twins).top("gift wrapping please", "en", k=10)
    assert [m.entry.id for m in top] == [f"twin-{n}" for n in range(10)]


def test_an_empty_index_matches_nothing() -> None:
    assert FaqIndex([]).match("opening hours", "en") is None
    assert FaqIndex([]).top("opening hours", "en") == []


def test_matching_never_refits_the_vectoriser(
    index: FaqIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the vectoriser was used at match time")

    for method in ("fit", "fit_transform", "transform"):
        monkeypatch.setattr(TfidfVectorizer, method, refuse)
    match = index.match("opening hours on sunday", "en")
    assert match is not None
    assert match.entry.id == "opening-hours"


def test_the_threshold_decides_confidence() -> None:
    entry = build_entry("hours", {"en": ["opening hours"]}, {"en": "9 to 5."})
    question = "what are the opening hours of the shop"
    lenient = FaqIndex([entry], threshold=0.0).match(question, "en")
    strict = FaqIndex([entry], threshold=1.0).match(question, "en")
    assert lenient is not None
    assert lenient.confident
    assert strict is not None
    assert not strict.confident
    with pytest.raises(ValueError, match="threshold"):
        FaqIndex([entry], threshold=1.5)


# --- the rules of an entry ----------------------------------------------------------------------


def test_an_entry_needs_a_language_with_both_a_question_and_an_answer() -> None:
    with pytest.raises(FaqEntryInvalid) as caught:
        build_entry("hours", {"es": ["¿Horario?"]}, {"en": "9 to 5."})
    assert [(p.field, p.reason) for p in caught.value.problems] == [
        ("questions", "needs at least one language with a question and an answer")
    ]


def test_every_bad_field_of_an_entry_is_named() -> None:
    with pytest.raises(FaqEntryInvalid) as caught:
        build_entry("Bad Id", {"es": ["ok", "  "], "fr": ["Bonjour"]}, {"en": ""}, ["x" * 40])
    fields = [p.field for p in caught.value.problems]
    assert fields == ["id", "questions.es[1]", "questions.fr", "answers.en", "tags[0]"]


def test_repeated_variants_and_tags_are_kept_once() -> None:
    entry = build_entry("hours", {"en": ["Hours?", " Hours? "]}, {"en": "9-5"}, ["A", "a"])
    assert entry.questions["en"] == ("Hours?",)
    assert entry.tags == ("a",)


# --- loading files ------------------------------------------------------------------------------


def test_yaml_file_loads_with_a_top_level_list(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "kb.yaml",
        """
        - id: hours
          tags: [stores]
          questions:
            es: ["¿Qué horario tenéis?"]
            en: ["What are your hours?", "When do you open?"]
          answers:
            es: De 10 a 21.
            en: no
        """,
    )
    [entry] = load_faq_file(path)
    assert entry.id == "hours"
    assert entry.questions["en"] == ("What are your hours?", "When do you open?")
    assert entry.answers["en"] == "no"  # YAML's "no" stays text, not False
    assert entry.tags == ("stores",)


def test_yaml_errors_name_the_line_the_entry_and_the_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "kb.yaml",
        """
        entries:
          - id: hours
            questions:
              es: ["¿Horario?", ""]
            answers:
              es: De 10 a 21.
          - id: returns
            questions:
              en: ["How do I return an item?"]
            answer:
              en: Within 30 days.
          - id: hours
            questions:
              de: ["Öffnungszeiten?"]
            answers:
              en: 9 to 5.
        """,
    )
    assert problems_of(path) == [
        "line 4: entry 'hours': questions.es[1]: must not be empty",
        "line 10: entry 'returns': answer: unknown field; an entry has id, questions, answers, "
        "tags",
        "line 7: entry 'returns': answers: must map a language to an answer, not nothing",
        "line 12: entry 'hours': id: duplicate id; the entry on line 2 has it",
    ]


def test_yaml_syntax_errors_give_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "kb.yaml", "- id: hours\n  questions: [unclosed\n")
    [problem] = problems_of(path)
    assert problem.startswith("line 3: file: is not valid YAML")


def test_a_yaml_file_without_entries_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "kb.yaml", "version: 2\n")
    assert problems_of(path) == ["line 1: entries: the file must hold a list of entries"]


CSV_KB = """
id,language,question,answer,tags
hours,es,¿Qué horario tenéis?,"De lunes a sábado,
de 10 a 21.",stores;hours
hours,es,¿A qué hora abrís?,,
hours,en,What are your opening hours?,Monday to Saturday 10am to 9pm.,stores
returns,en,How do I return an item?,Within 30 days.,returns
"""


def test_csv_file_has_one_question_variant_per_row(tmp_path: Path) -> None:
    hours, returns = load_faq_file(write(tmp_path, "kb.csv", CSV_KB))
    assert hours.id == "hours"
    assert hours.questions["es"] == ("¿Qué horario tenéis?", "¿A qué hora abrís?")
    assert hours.answers["es"] == "De lunes a sábado,\nde 10 a 21."
    assert hours.tags == ("stores", "hours")
    assert returns.answers == {"en": "Within 30 days."}


def test_csv_errors_name_the_line_the_entry_and_the_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "kb.csv",
        """
        id,language,question,answer,tags
        hours,es,¿Horario?,De 10 a 21.,
        hours,es,¿Abrís hoy?,De 9 a 20.,
        hours,fr,Horaires ?,De 10 à 21.,
        returns,en,,,
        gifts,en,Gift cards?,Yes.,a;b,extra
        """,
    )
    assert problems_of(path) == [
        "line 3: entry 'hours': answer: differs from the es answer on line 2; give it once",
        "line 4: entry 'hours': language: unknown language 'fr'; use one of ['es', 'en']",
        "line 5: entry 'returns': question: a row needs a question, an answer or both",
        "line 6: row: has 6 columns; the header has 5",
    ]


def test_csv_rule_errors_point_at_the_row_of_the_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "kb.csv",
        """
        id,language,question,answer
        hours,es,¿Horario?,
        hours,en,,Monday to Saturday.
        """,
    )
    assert problems_of(path) == [
        "line 2: entry 'hours': questions: needs at least one language with a question and an "
        "answer"
    ]


def test_csv_needs_its_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "kb.csv", "id,question,answer\nhours,Hours?,9-5\n")
    [problem] = problems_of(path)
    assert problem == (
        "line 1: header: missing column(s) language; expected id,language,question,answer,tags"
    )


def test_other_file_types_are_refused(tmp_path: Path) -> None:
    assert problems_of(write(tmp_path, "kb.json", "[]")) == [
        "file: unknown format; use .yaml, .yml or .csv"
    ]


# --- the stored knowledge base ------------------------------------------------------------------

HOURS = build_entry(
    "opening-hours",
    {"es": ["¿Cuál es el horario?"], "en": ["What are your opening hours?"]},
    {"es": "De 10 a 21.", "en": "10am to 9pm."},
    ["stores"],
)
PARKING = build_entry(
    "parking",
    {"en": ["Is there parking near the store?", "where can I park"]},
    {"en": "Yes, the Serrano car park, two minutes away."},
)


async def test_seeding_is_idempotent_and_keeps_staff_additions(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        assert await seed_from_file(session, KB_FILE) >= 30
        await save_entry(session, PARKING)
    async with sessionmaker.begin() as session:
        await seed_from_file(session, KB_FILE)
        entries = await load_entries(session)
    shipped = load_faq_file(KB_FILE)
    assert [e.id for e in entries] == sorted([*(e.id for e in shipped), "parking"])
    assert {e.id: e for e in entries}["opening-hours"] == {e.id: e for e in shipped}[
        "opening-hours"
    ]


async def test_start_up_seeding_leaves_a_kb_that_has_entries(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        await save_entry(session, PARKING)
        assert await seed_from_file(session, KB_FILE, only_if_empty=True) == 0
        assert [e.id for e in await load_entries(session)] == ["parking"]


async def test_save_replace_and_delete_are_audited(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        assert await save_entry(session, HOURS, actor="staff:ana") is True
        assert await save_entry(session, HOURS, actor="staff:ana") is False
        assert await delete_entry(session, "opening-hours", actor="staff:ana") is True
        assert await delete_entry(session, "opening-hours", actor="staff:ana") is False
        assert await get_entry(session, "opening-hours") is None
        audit = await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id))
        assert list(audit) == ["faq.create", "faq.replace", "faq.delete"]


async def test_a_stored_entry_comes_back_as_it_was_saved(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        await save_entry(session, HOURS)
    async with sessionmaker() as session:
        assert await get_entry(session, "opening-hours") == HOURS


async def test_a_row_broken_by_hand_is_left_out(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        await save_entry(session, HOURS)
        await save_entry(session, PARKING)
        await session.execute(
            update(FaqRow).where(FaqRow.id == "parking").values(answers={"en": ""})
        )
    async with sessionmaker() as session:
        assert [e.id for e in await load_entries(session)] == ["opening-hours"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_catalogue_rebuilds_only_when_the_entries_change(
    sessionmaker: SessionMaker,
) -> None:
    clock = Clock()
    catalogue = FaqCatalogue(recheck=5.0, clock=clock)
    async with sessionmaker.begin() as session:
        await save_entry(session, HOURS)
    first = await catalogue.index(sessionmaker)
    assert catalogue.version == 1
    assert [e.id for e in first.entries] == ["opening-hours"]

    catalogue.invalidate()  # nothing changed: looked at again, not rebuilt
    assert await catalogue.index(sessionmaker) is first
    assert catalogue.version == 1

    async with sessionmaker.begin() as session:
        await save_entry(session, PARKING)
    catalogue.invalidate()  # a change made through this process
    second = await catalogue.index(sessionmaker)
    assert catalogue.version == 2
    match = second.match("where can I park my car", "en")
    assert match is not None
    assert match.entry.id == "parking"


async def test_the_catalogue_can_look_through_the_callers_session(
    sessionmaker: SessionMaker,
) -> None:
    catalogue = FaqCatalogue()
    async with sessionmaker.begin() as session:
        await save_entry(session, HOURS)
        index = await catalogue.index(session)  # sees the caller's own uncommitted change
        assert [e.id for e in index.entries] == ["opening-hours"]
        catalogue.invalidate()
        assert await catalogue.index(session) is index


async def test_the_catalogue_notices_changes_from_other_processes(
    sessionmaker: SessionMaker,
) -> None:
    clock = Clock()
    catalogue = FaqCatalogue(recheck=5.0, clock=clock)
    async with sessionmaker.begin() as session:
        await save_entry(session, HOURS)
        await save_entry(session, PARKING)
    first = await catalogue.index(sessionmaker)
    async with sessionmaker.begin() as session:  # another process, no invalidate()
        await delete_entry(session, "parking")
    clock.now = 4.9
    assert await catalogue.index(sessionmaker) is first
    clock.now = 5.0
    second = await catalogue.index(sessionmaker)
    assert catalogue.version == 2
    assert [e.id for e in second.entries] == ["opening-hours"]


async def test_the_catalogue_of_an_empty_kb_matches_nothing(sessionmaker: SessionMaker) -> None:
    catalogue = FaqCatalogue()
    index = await catalogue.index(sessionmaker)
    assert index.match("opening hours", "en") is None
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(FaqRow)) == 0


def test_a_batch_matches_as_each_question_alone(index: FaqIndex) -> None:
    """match_all (the inbound path's batches) finds what match finds, question by question."""
    questions = load_labelled()
    texts = [q.text for q in questions] + ["", "¿?", "zzqx wvvk"]
    languages = [q.language for q in questions] + ["es", "en", "es"]
    together = index.match_all(texts, languages)
    alone = [index.match(text, language) for text, language in zip(texts, languages, strict=True)]
    assert together == alone
    assert together[-3:-1] == [None, None]  # nothing to match in an empty or "¿?" question
    assert index.match_all([], []) == []


def _scores(data: st.DataObject, rows: int, columns: int) -> NDArray[np.float32]:
    """A drawn score matrix of few distinct values, so that ties (between entries, between
    variants) are common."""
    level = st.sampled_from([0.0, 0.25, 0.5, 1.0])
    row = st.lists(level, min_size=columns, max_size=columns)
    return np.array(data.draw(st.lists(row, min_size=rows, max_size=rows)), np.float32)


@given(
    st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=8),
    st.integers(min_value=1, max_value=5),
    st.data(),
)
def test_ranking_texts_together_is_ranking_each_on_its_own(
    lengths: list[int], texts: int, data: st.DataObject
) -> None:
    starts = np.cumsum([0, *lengths[:-1]])
    index = SimpleNamespace(_variant_starts=starts, _variants=["v"] * sum(lengths))
    per_entry = _scores(data, len(lengths), texts)
    per_variant = _scores(data, sum(lengths), texts)
    k = data.draw(st.integers(min_value=1, max_value=len(lengths) + 1))
    for j, ranking in enumerate(rank_all(index, per_entry, per_variant, k)):
        column = per_entry[:, j].tolist()
        expected = []
        for i in sorted(range(len(lengths)), key=lambda i: (-column[i], i))[:k]:
            if column[i] <= 0.0:
                break
            rows = per_variant[starts[i] : starts[i] + lengths[i], j].tolist()
            expected.append((i, column[i], int(starts[i]) + rows.index(max(rows))))
        assert ranking == tuple(expected)
