"""The end-to-end self-service benchmark (bench/selfservice.py): its held-out question set is well
formed and really held out, and its classifier reads plans as the contract writes them."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st

from bench.selfservice import (
    QUESTIONS_FILE,
    Outcome,
    Question,
    classify,
    follow_up,
    load_questions,
    options,
    right_option,
    run,
)
from channels.base import ChannelName
from consent.keywords import KeywordKind
from consent.keywords import classify as keyword

REPO = Path(__file__).resolve().parent.parent
ACTIONS = {
    "action_order_status",
    "action_request_callback",
    "action_update_preferences",
    "action_opt_out",
}
QUESTIONS = load_questions()


def _question(*expected: str, answerable: bool = True, opt_out: bool = False) -> Question:
    return Question("text", "en", frozenset(expected), answerable, opt_out, "faq")


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.casefold())
    return " ".join(re.findall(r"\w+", "".join(c for c in text if not unicodedata.combining(c))))


def _strings(node: Any) -> set[str]:
    if isinstance(node, str):
        return {_fold(node)}
    if isinstance(node, dict):
        return set().union(*(_strings(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_strings(value) for value in node))
    return set()


# --- the question set -------------------------------------------------------------------------


def test_the_set_is_large_and_about_half_each_language() -> None:
    languages = Counter(q.language for q in QUESTIONS)
    assert len(QUESTIONS) >= 320
    assert min(languages.values()) >= 0.4 * len(QUESTIONS)


def test_the_set_covers_every_kind_of_question() -> None:
    kinds = Counter(q.kind for q in QUESTIONS)
    assert all(kinds[kind] >= 8 for kind in ("off_topic", "opt_out", "human", "complaint"))
    assert all(kinds[kind] >= 10 for kind in ("order", "callback", "small_talk", "preferences"))


def test_expected_outcomes_name_what_exists() -> None:
    kb = yaml.safe_load((REPO / "dialog" / "data" / "faq.yaml").read_text(encoding="utf-8"))
    entries = {entry["id"] for entry in kb["entries"]}
    for q in QUESTIONS:
        for plan in q.expected:
            kind, _, detail = plan.partition(":")
            if kind == "faq":
                assert detail in entries, plan
            elif kind in ("action", "confirm"):
                assert detail in ACTIONS, plan


def test_unanswerable_questions_expect_no_answer() -> None:
    for q in QUESTIONS:
        if not q.answerable:
            assert q.expected <= {"rephrase", "handoff:not_understood"}, q.text
            assert not q.opt_out


def test_opt_outs_are_labelled_and_accept_the_confirmation() -> None:
    for q in QUESTIONS:
        assert q.opt_out == (q.kind == "opt_out" or "confirm:action_opt_out" in q.expected)
        if q.opt_out:
            assert "confirm:action_opt_out" in q.expected


def test_no_question_that_is_not_an_opt_out_revokes_by_the_law() -> None:
    """Those words revoke consent by design (consent.keywords): a question using them would
    make "consent changed by a non-opt-out: 0" a target no bot could reach."""
    for q in QUESTIONS:
        if not q.opt_out:
            assert keyword(q.text).kind is KeywordKind.NONE, q.text


def test_no_question_is_copied_from_the_data_or_another_test_set() -> None:
    seen: set[str] = set()
    for path in (
        REPO / "dialog" / "data" / "faq.yaml",
        REPO / "dialog" / "data" / "nlu.yaml",
        *sorted((REPO / "tests" / "dialog" / "data").glob("*.yaml")),
    ):
        seen |= _strings(yaml.safe_load(path.read_text(encoding="utf-8")))
    copied = [q.text for q in QUESTIONS if _fold(q.text) in seen]
    assert copied == []
    assert len({_fold(q.text) for q in QUESTIONS}) == len(QUESTIONS)


def test_the_file_says_it_is_held_out() -> None:
    assert QUESTIONS_FILE.read_text(encoding="utf-8").startswith("# HELD OUT.")


@pytest.mark.parametrize(
    ("item", "complaint"),
    [
        ({"language": "en", "expected": ["faq:returns"]}, "needs a text"),
        ({"text": "x", "language": "en", "expected": []}, "non-empty list"),
        ({"text": "x", "language": "en", "expected": ["returns"]}, "not a list of plan strings"),
        (
            {"text": "x", "language": "en", "expected": ["rephrase"], "answerable": "yes"},
            "true or false",
        ),
        (
            {
                "text": "x",
                "language": "fr",
                "expected": ["rephrase"],
                "answerable": False,
                "opt_out": False,
                "kind": "off_topic",
            },
            "language must be one of",
        ),
    ],
)
def test_a_malformed_question_is_refused(
    tmp_path: Path, item: dict[str, Any], complaint: str
) -> None:
    path = tmp_path / "questions.yaml"
    path.write_text(yaml.safe_dump({"questions": [item]}), encoding="utf-8")
    with pytest.raises(ValueError, match=complaint):
        load_questions(path)


# --- the classifier -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "question", "outcome"),
    [
        ("faq:returns", _question("faq:returns"), Outcome.RIGHT),
        (
            "action:action_order_status",
            _question("faq:order-tracking", "action:action_order_status"),
            Outcome.RIGHT,
        ),
        ("choices:faq:exchanges|faq:returns", _question("faq:returns"), Outcome.CHOICES),
        ("choices:faq:exchanges|faq:warranty", _question("faq:returns"), Outcome.CHOICES_WRONG),
        ("handoff:not_understood", _question("faq:returns"), Outcome.HANDOFF),
        ("handoff:complaint", _question("faq:returns"), Outcome.HANDOFF),
        ("rephrase", _question("faq:returns"), Outcome.REPHRASE),
        ("faq:exchanges", _question("faq:returns"), Outcome.WRONG),
        ("small_talk:greet", _question("faq:returns"), Outcome.WRONG),
        # A confirmation the question did not call for, or a keyword it did not say: wrong.
        ("confirm:action_opt_out", _question("faq:privacy-data"), Outcome.WRONG),
        ("keyword:opt_out", _question("faq:returns"), Outcome.WRONG),
        ("keyword:opt_out", _question("keyword:opt_out", opt_out=True), Outcome.RIGHT),
        (
            "rephrase",
            _question("rephrase", "handoff:not_understood", answerable=False),
            Outcome.RIGHT,
        ),
        ("faq:store-locations", _question("rephrase", answerable=False), Outcome.WRONG),
        (None, _question("faq:returns"), Outcome.NO_PLAN),
    ],
)
def test_classify(plan: str | None, question: Question, outcome: Outcome) -> None:
    assert classify(plan, question) is outcome


def test_the_right_option_is_numbered_as_offered() -> None:
    plan = "choices:faq:exchanges|faq:returns|action:action_order_status"
    assert options(plan) == ("faq:exchanges", "faq:returns", "action:action_order_status")
    assert right_option(plan, {"action:action_order_status", "faq:returns"}) == 2
    assert right_option(plan, {"faq:warranty"}) is None
    assert right_option("faq:returns", {"faq:returns"}) is None
    assert options(None) == ()


_OPTION = st.sampled_from(["faq:returns", "faq:exchanges", "faq:warranty", "action:action_opt_out"])


@given(st.lists(_OPTION, min_size=1, max_size=4, unique=True), st.sets(_OPTION, min_size=1))
def test_choices_are_credited_only_with_a_right_option(
    offered: list[str], expected: set[str]
) -> None:
    plan = "choices:" + "|".join(offered)
    question = _question(*expected)
    number = right_option(plan, expected)
    if set(offered) & expected:
        assert number is not None
        assert offered[number - 1] in expected
        assert not set(offered[: number - 1]) & expected
        assert classify(plan, question) is Outcome.CHOICES
    else:
        assert number is None
        assert classify(plan, question) is Outcome.CHOICES_WRONG


@pytest.mark.parametrize(
    ("plan", "question", "words", "answer"),
    [
        ("choices:faq:exchanges|faq:returns", _question("faq:returns"), False, "2"),
        ("choices:faq:exchanges|faq:returns", _question("faq:returns"), True, "Returns"),
        ("choices:faq:exchanges|faq:warranty", _question("faq:returns"), False, None),
        ("confirm:action_opt_out", _question("confirm:action_opt_out", opt_out=True), False, "YES"),
        # Asked to confirm what they did not ask for, a customer does not say YES.
        ("confirm:action_opt_out", _question("faq:privacy-data"), False, None),
        ("faq:returns", _question("faq:returns"), False, None),
    ],
)
def test_follow_up(plan: str, question: Question, words: bool, answer: str | None) -> None:
    assert follow_up(plan, ("Exchanges", "Returns"), question, words=words) == answer


def test_a_spanish_customer_confirms_in_spanish() -> None:
    question = Question(
        "no mas ofertas", "es", frozenset({"confirm:action_opt_out"}), True, True, "opt_out"
    )
    assert follow_up("confirm:action_opt_out", (), question, words=False) == "SI"


# --- the whole run --------------------------------------------------------------------------------


async def test_the_benchmark_runs_end_to_end(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the real inbound path: STOP revokes marketing (the keyword, before the bot), a
    greeting leaves consent as it was, and the figures are printed."""
    questions = [
        Question("STOP", "en", frozenset({"keyword:opt_out"}), True, True, "opt_out"),
        Question("holaa buenas", "es", frozenset({"small_talk:greet"}), True, False, "small_talk"),
    ]
    stop, hello = await run(
        "test", database_url, ChannelName.SMS, questions, customers=1, choose="number"
    )
    assert (stop.plan, stop.outcome, stop.revoked) == ("keyword:opt_out", Outcome.RIGHT, True)
    assert stop.consent_changed
    assert hello.plan is not None
    assert not hello.consent_changed
    assert "consent changed by a non-opt-out: 0  PASS" in capsys.readouterr().out
