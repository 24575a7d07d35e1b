"""The one decision over both signals (`plan_turn`): the intent model's probabilities and the
FAQ's scores weighed together. Examples of each rule, then the properties that hold for any
reading (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actions.awaiting import Awaiting
from crm_core.models import Tier
from dialog.faq import FaqEntry, FaqMatch
from dialog.nlu import INTENTS, Entity, Understanding
from dialog.selfservice import ACTIONS, BrainConfig, FaqFound, Plan, PlanKind, plan_turn

CONFIG = BrainConfig()
T = 0.42  # the matcher's line
IDS = ("returns", "exchanges", "order-tracking", "opening-hours")
ORDER = Entity("order_number", "SO-1", "SO-1")


def entry(id_: str) -> FaqEntry:
    return FaqEntry(id_, {"en": (f"About {id_}?",)}, {"en": f"All about {id_}."})


def found(*scores: tuple[str, float]) -> FaqFound:
    return FaqFound(
        tuple(FaqMatch(entry(i), s, s >= T, f"All about {i}.", f"About {i}?") for i, s in scores),
        T,
    )


def read(
    *ranking: tuple[str, float], entities: tuple[Entity, ...] = (), text: str = "text"
) -> Understanding:
    intent, confidence = ranking[0]
    return Understanding(text, intent, confidence, "en", entities, ranking)


def plan(
    understood: Understanding,
    faq: FaqFound | None = None,
    *,
    tier: Tier = Tier.STANDARD,
    failed: int = 0,
) -> Plan:
    return plan_turn(understood, faq, tier=tier, failed_turns=failed, config=CONFIG)


def test_an_order_status_question_without_a_number_gets_the_faqs_answer() -> None:
    """ "is there a tracking link for my parcel": order status, but only the FAQ can answer."""
    result = plan(read(("order_status", 0.97)), found(("order-tracking", 0.44)))
    assert (result.kind, result.entry) == (PlanKind.FAQ, "order-tracking")
    assert "lacks its order_number" in result.reason


def test_an_order_status_question_with_its_number_runs_the_action() -> None:
    result = plan(read(("order_status", 0.6), entities=(ORDER,)), found(("order-tracking", 0.6)))
    assert (result.kind, result.action) == (PlanKind.ACTION, "action_order_status")


def test_a_guessed_action_gives_way_to_a_confident_faq_answer() -> None:
    """ "I can't log in to my account, reset password" read as a preference change."""
    result = plan(read(("change_preferences", 0.5)), found(("returns", 0.65)))
    assert (result.kind, result.entry) == (PlanKind.FAQ, "returns")


def test_an_action_the_model_is_sure_of_runs_whatever_the_faq_says() -> None:
    result = plan(read(("request_callback", 0.95)), found(("opening-hours", 0.6)))
    assert (result.kind, result.action) == (PlanKind.ACTION, "action_request_callback")


def test_a_guessed_withdrawal_near_an_faq_entry_is_offered_beside_it() -> None:
    result = plan(read(("opt_out", 0.52), ("faq", 0.3)), found(("returns", 0.34)))
    assert result.kind is PlanKind.CHOICES
    assert result.options == ("faq:returns", "action:action_opt_out")


def test_a_guessed_withdrawal_with_nothing_near_runs_its_action_which_asks_first() -> None:
    result = plan(read(("opt_out", 0.6)), found(("returns", 0.1)))
    assert (result.kind, result.action) == (PlanKind.ACTION, "action_opt_out")


def test_entries_just_below_the_line_are_offered_instead_of_rephrase() -> None:
    """ "cuánto tarda un envío a Sevilla": national and international shipping, both close."""
    result = plan(read(("faq", 0.9)), found(("returns", 0.35), ("exchanges", 0.31)))
    assert result.options == ("faq:returns", "faq:exchanges")


def test_an_entry_just_below_the_line_that_clearly_leads_is_answered_when_the_model_agrees() -> (
    None
):
    """ "do you do hemming on trousers": alterations at 0.38, nothing else near."""
    result = plan(read(("faq", 0.97)), found(("returns", 0.38), ("exchanges", 0.17)))
    assert (result.kind, result.entry) == (PlanKind.FAQ, "returns")


def test_a_likely_action_is_offered_beside_the_entries() -> None:
    result = plan(
        read(("faq", 0.5), ("order_status", 0.3)), found(("returns", 0.3), ("exchanges", 0.29))
    )
    assert result.options == ("faq:returns", "faq:exchanges", "action:action_order_status")


def test_an_off_topic_question_far_from_the_kb_is_not_answered() -> None:
    """ "what is the capital of Australia": the model says FAQ, the FAQ comes nowhere near."""
    result = plan(read(("faq", 0.85)), found(("returns", 0.23), ("exchanges", 0.22)))
    assert result.kind is PlanKind.REPHRASE


def test_hesitating_between_actions_offers_them() -> None:
    result = plan(read(("order_status", 0.4), ("request_callback", 0.35), ("faq", 0.1)))
    assert result.options == ("action:action_order_status", "action:action_request_callback")


def test_a_withdrawal_is_never_suggested_to_someone_hesitant() -> None:
    result = plan(read(("faq", 0.4), ("opt_out", 0.35)))
    assert result.kind is PlanKind.REPHRASE


def test_small_talk_gives_way_to_a_confident_faq_answer_unless_sure() -> None:
    assert plan(read(("greet", 0.6)), found(("opening-hours", 0.53))).kind is PlanKind.FAQ
    assert plan(read(("greet", 0.95)), found(("opening-hours", 0.53))).kind is PlanKind.SMALL_TALK


def test_a_cmv_customer_gets_a_person_rather_than_options() -> None:
    result = plan(read(("faq", 0.9)), found(("returns", 0.35), ("exchanges", 0.31)), tier=Tier.CMV)
    assert (result.kind, result.handoff) == (PlanKind.HANDOFF, "cmv_priority")


@pytest.mark.parametrize(
    ("chosen", "kind", "target"),
    [
        ("faq:returns", PlanKind.FAQ, "returns"),
        ("action:action_order_status", PlanKind.ACTION, "action_order_status"),
    ],
)
def test_the_option_picked_is_run(chosen: str, kind: PlanKind, target: str) -> None:
    result = plan_turn(
        read(("opt_out", 0.9)),
        None,
        tier=Tier.CMV,
        failed_turns=3,
        config=CONFIG,
        chosen=chosen,
    )
    assert (result.kind, result.entry or result.action) == (kind, target)


def test_no_to_the_options_offered_asks_to_rephrase_once() -> None:
    kw = {"tier": Tier.STANDARD, "config": CONFIG, "declined": True}
    first = plan_turn(read(("opt_out", 0.9)), None, failed_turns=0, **kw)  # type: ignore[arg-type]
    assert first.kind is PlanKind.REPHRASE
    second = plan_turn(read(("opt_out", 0.9)), None, failed_turns=1, **kw)  # type: ignore[arg-type]
    assert second.handoff == "not_understood"


def test_the_outcome_names_what_was_done() -> None:
    offered = plan(read(("faq", 0.9)), found(("returns", 0.35), ("exchanges", 0.31)))
    assert offered.outcome == "choices:faq:returns|faq:exchanges"
    answered = plan(read(("faq", 0.9)), found(("returns", 0.6)))
    assert answered.outcome == "faq:returns"
    assert plan(read(("faq", 0.9)), found(), failed=1).outcome == "handoff:not_understood"


# --- properties ---------------------------------------------------------------------------------

probability = st.floats(0, 1, allow_nan=False)
rankings = st.lists(
    st.tuples(st.sampled_from(INTENTS), probability),
    min_size=1,
    max_size=3,
    unique_by=lambda r: r[0],
).map(lambda r: tuple(sorted(r, key=lambda x: -x[1])))
findings = st.lists(
    st.tuples(st.sampled_from(IDS), st.floats(0.01, 1, allow_nan=False)),
    max_size=3,
    unique_by=lambda f: f[0],
).map(lambda f: found(*sorted(f, key=lambda x: -x[1])))


@given(
    ranking=rankings,
    faq=st.none() | findings,
    tier=st.sampled_from(list(Tier)),
    failed=st.integers(0, 5),
    numbered=st.booleans(),
)
def test_properties_of_the_decision(
    ranking: tuple[tuple[str, float], ...],
    faq: FaqFound | None,
    tier: Tier,
    failed: int,
    numbered: bool,
) -> None:
    understood = read(*ranking, entities=(ORDER,) if numbered else ())
    result = plan(understood, faq, tier=tier, failed=failed)
    intent, confidence = ranking[0]
    confident = confidence >= CONFIG.intent_threshold
    best = faq.best if faq else None
    # Pure: the same reading gets the same plan.
    assert result == plan(understood, faq, tier=tier, failed=failed)
    # An explicit request for a person is always honoured.
    if intent == "human" and confident:
        assert result.handoff == "customer_asked"
    # A hand-off always says why; only a hand-off does.
    assert (result.kind is PlanKind.HANDOFF) == (result.handoff is not None)
    # A CMV customer is never asked to rephrase nor to pick among options.
    if tier is Tier.CMV:
        assert result.kind not in (PlanKind.REPHRASE, PlanKind.CHOICES)
    # Nobody is asked to rephrase a second time.
    if failed >= CONFIG.max_failed_turns - 1:
        assert result.kind is not PlanKind.REPHRASE
    # An FAQ answer is the best entry, and never one far below the line.
    if result.kind is PlanKind.FAQ:
        assert best is not None
        assert result.entry == best.entry.id
        assert best.score >= CONFIG.faq_agree * T
    # Options: one to three, all different, each an entry near the line or an action.
    if result.kind is PlanKind.CHOICES:
        assert 1 <= len(result.options) <= 3
        assert len(set(result.options)) == len(result.options)
        near = {f"faq:{m.entry.id}" for m in (faq.matches if faq else ()) if m.score >= 0.6 * T}
        assert all(
            o in near or o.removeprefix("action:") in ACTIONS.values() for o in result.options
        )
        # A withdrawal is offered only when the model read one first.
        if "action:action_opt_out" in result.options:
            assert intent == "opt_out"
            assert confident
    # Consent is withdrawn (after confirmation) only when the model read an opt-out.
    if result.action == "action_opt_out":
        assert intent == "opt_out"
        assert confident
    # "Could you rephrase?" only when there is truly nothing to offer.
    if result.kind is PlanKind.REPHRASE:
        assert best is None or best.score < CONFIG.faq_near * T
    # An order's status with its number, read with confidence, is looked up.
    if intent == "order_status" and confident and numbered and tier is not Tier.CMV:
        assert (result.kind, result.action) == (PlanKind.ACTION, "action_order_status")


@given(ranking=rankings, faq=findings, awaiting=st.sampled_from(list(Awaiting)))
def test_an_answer_to_an_actions_question_goes_back_to_it(
    ranking: tuple[tuple[str, float], ...], faq: FaqFound, awaiting: Awaiting
) -> None:
    result = plan_turn(
        read(*ranking), faq, tier=Tier.STANDARD, failed_turns=0, config=CONFIG, answered=awaiting
    )
    assert (result.kind, result.action) == (PlanKind.ACTION, awaiting.action)
