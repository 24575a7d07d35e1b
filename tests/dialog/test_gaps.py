"""The KB's gaps, grouped: which outcomes count, and the rules of the grouping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialog.faq import FaqIndex, build_entry
from dialog.gaps import (
    ANSWERS,
    EXAMPLES,
    TEXT_LIMIT,
    AgentAnswer,
    Gap,
    gap_kind,
    group_gaps,
    is_gap,
    suggest_entries,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
WORDS = ["hem", "trousers", "suit", "madrid", "shop", "envio", "sevilla", "klarna", "?", "123"]


def gap(
    message_id: int,
    text: str,
    *,
    minutes: int | None = None,
    language: str = "en",
    outcome: str = "rephrase",
    answer: AgentAnswer | None = None,
) -> Gap:
    at = T0 + timedelta(minutes=message_id if minutes is None else minutes)
    return Gap(message_id, text, language, "sms", at, outcome, answer)


@st.composite
def gap_lists(draw: st.DrawFn) -> list[Gap]:
    """Gaps from a small vocabulary, so that equal and near texts are common."""
    texts = draw(
        st.lists(
            st.lists(st.sampled_from(WORDS), min_size=0, max_size=4).map(" ".join),
            max_size=25,
        )
    )
    minutes = draw(st.lists(st.integers(0, 50), min_size=len(texts), max_size=len(texts)))
    languages = draw(
        st.lists(st.sampled_from(["es", "en"]), min_size=len(texts), max_size=len(texts))
    )
    return [
        gap(i + 1, text, minutes=m, language=language)
        for i, (text, m, language) in enumerate(zip(texts, minutes, languages, strict=True))
    ]


# --- which outcomes are gaps -------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "kind"),
    [
        ("rephrase", "rephrase"),
        ("choices:faq:returns|faq:exchanges", "choices"),
        ("handoff:not_understood", "handoff:not_understood"),
        ("handoff:cmv_priority", "handoff:cmv_priority"),
        ("handoff:some_new_reason", "handoff:some_new_reason"),
    ],
)
def test_outcomes_the_bot_did_not_answer_are_gaps(outcome: str, kind: str) -> None:
    assert gap_kind(outcome) == kind
    assert is_gap(outcome)


@pytest.mark.parametrize(
    "outcome",
    [
        None,
        "faq:returns",
        "action:action_order_status",
        "small_talk:greet",
        "confirm:action_opt_out",
        "keyword:stop",
        "handoff:complaint",
        "handoff:customer_asked",
        "handoff:attachment",
    ],
)
def test_answers_complaints_requests_for_a_person_and_files_are_no_gaps(
    outcome: str | None,
) -> None:
    assert gap_kind(outcome) is None
    assert not is_gap(outcome)


# --- grouping rules ----------------------------------------------------------------------


@given(gap_lists())
def test_grouping_is_a_partition(gaps: list[Gap]) -> None:
    groups = group_gaps(gaps)
    grouped = [i for group in groups for i in group.message_ids]
    assert sorted(grouped) == sorted(g.message_id for g in gaps)
    assert sum(group.count for group in groups) == len(gaps)
    assert all(group.count == len(group.message_ids) > 0 for group in groups)


@given(gap_lists())
def test_texts_that_read_the_same_share_a_group(gaps: list[Gap]) -> None:
    group_of = {i: n for n, group in enumerate(group_gaps(gaps)) for i in group.message_ids}
    by_text: dict[str, set[int]] = {}
    for g in gaps:
        by_text.setdefault(" ".join(g.text.lower().split()), set()).add(group_of[g.message_id])
    assert all(len(groups) == 1 for groups in by_text.values())


@given(gap_lists())
def test_most_frequent_first_then_most_recent(gaps: list[Gap]) -> None:
    groups = group_gaps(gaps)
    keys = [(g.count, g.last_seen, g.last_message_id) for g in groups]
    assert keys == sorted(keys, reverse=True)


@given(gap_lists(), st.randoms(use_true_random=False))
def test_the_order_gaps_come_in_changes_nothing(gaps: list[Gap], random: object) -> None:
    shuffled = list(gaps)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    assert group_gaps(shuffled) == group_gaps(gaps)


@given(gap_lists())
def test_each_group_says_when_and_in_which_languages(gaps: list[Gap]) -> None:
    by_id = {g.message_id: g for g in gaps}
    for group in group_gaps(gaps):
        members = [by_id[i] for i in group.message_ids]
        assert group.first_seen == min(m.at for m in members)
        assert group.last_seen == max(m.at for m in members)
        assert sum(group.languages.values()) == group.count
        assert list(group.languages.values()) == sorted(group.languages.values(), reverse=True)
        assert 0 < len(group.examples) <= EXAMPLES
        assert len(set(group.examples)) == len(group.examples)


def test_paraphrases_meet_and_other_questions_stay_apart() -> None:
    gaps = [
        gap(1, "do you do hemming on trousers"),
        gap(2, "can you hem my trousers?"),
        gap(3, "hemming trousers price"),
        gap(4, "cuanto tarda un envio a sevilla", language="es"),
        gap(5, "cuánto tarda el envío a Sevilla??", language="es"),
        gap(6, "can I pay with klarna"),
        gap(7, "where is order 1234"),
        gap(8, "Where is order 98765?"),
    ]
    groups = group_gaps(gaps)
    assert [sorted(g.message_ids) for g in groups] == [[1, 2, 3], [7, 8], [4, 5], [6]]
    assert groups[0].languages == {"en": 3}
    assert groups[2].languages == {"es": 2}


def test_the_representative_is_the_most_frequent_text() -> None:
    gaps = [
        gap(1, "do you hem trousers?"),
        gap(2, "Do you hem trousers"),
        gap(3, "do you do hemming on trousers"),
    ]
    (group,) = group_gaps(gaps)
    assert group.text == "Do you hem trousers"  # the newest of the two that read the same
    assert group.examples == (
        "do you do hemming on trousers",
        "Do you hem trousers",
        "do you hem trousers?",
    )
    assert group.outcomes == {"rephrase": 3}


def test_agents_answers_come_most_recent_first_and_are_capped() -> None:
    answers = [
        AgentAnswer(100 + i, f"Yes, hemming takes {i} days", "agent:ana", T0 + timedelta(hours=i))
        for i in range(ANSWERS + 2)
    ]
    gaps = [gap(i + 1, "do you hem trousers", answer=a) for i, a in enumerate(answers)]
    gaps.append(gap(20, "do you hem trousers"))  # not answered (yet)
    gaps.append(gap(21, "do you hem trousers", answer=answers[-1]))  # one answer, two questions
    (group,) = group_gaps(gaps)
    assert group.answers == tuple(reversed(answers))[:ANSWERS]


def test_texts_shown_are_cut_to_a_limit() -> None:
    long = "hemming " * 200
    (group,) = group_gaps([gap(1, long)])
    assert len(group.text) == TEXT_LIMIT
    assert group.text.endswith("…")


def test_texts_with_nothing_to_read_group_with_their_own_kind() -> None:
    groups = group_gaps([gap(1, "😀😀"), gap(2, "😀😀"), gap(3, "???"), gap(4, "do you hem")])
    assert sorted(sorted(g.message_ids) for g in groups) == [[1, 2], [3], [4]]


def test_nothing_to_group() -> None:
    assert group_gaps([]) == []


def test_similarity_is_a_share() -> None:
    with pytest.raises(ValueError, match="similarity"):
        group_gaps([gap(1, "hem")], similarity=1.5)


# --- suggestions -------------------------------------------------------------------------


def _index() -> FaqIndex:
    return FaqIndex(
        [
            build_entry(
                "alterations",
                {"en": ["do you do alterations", "can you shorten my sleeves"]},
                {"en": "We alter anything bought from us, free, in 3 days."},
            ),
            build_entry(
                "payment",
                {"en": ["which payment methods do you accept", "can I pay by card"]},
                {"en": "Card, PayPal and Klarna."},
            ),
        ]
    )


def test_the_nearest_entry_is_suggested_when_it_comes_close() -> None:
    groups = group_gaps([gap(1, "do you do alterations on trousers"), gap(2, "zzz qqq")])
    (far, near) = suggest_entries(groups, _index())  # the newest first
    assert near.suggestion is not None
    assert near.suggestion.entry_id == "alterations"
    assert near.suggestion.question == "do you do alterations"
    assert far.suggestion is None


def test_a_weak_match_is_no_suggestion() -> None:
    groups = group_gaps([gap(1, "capital of peru")])
    index = _index()
    (weak,) = suggest_entries(groups, index, floor=0.0)
    assert weak.suggestion is not None
    assert weak.suggestion.score < index.threshold
    assert not weak.suggestion.confident
    assert suggest_entries(groups, index, floor=1.0) == groups


def test_no_suggestion_from_an_empty_kb() -> None:
    groups = group_gaps([gap(1, "do you do alterations")])
    assert suggest_entries(groups, FaqIndex([])) == groups
