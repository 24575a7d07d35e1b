"""The demo's consent stories, planned without a database: each one ends in the state it names."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from consent.ledger import replay
from consent.types import Action, Channel, ConsentStatus, Purpose
from sastre.demo_consent import ConsentStory, Reach, plan_consent

NOW = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
TOPICS = ("new-products", "offers", "newsletter")


@dataclass(frozen=True)
class _Event:
    id: int
    channel: str
    purpose: str
    topic: str
    action: str


reaches = st.builds(
    Reach, language=st.sampled_from(("en", "es")), phone=st.booleans(), telegram=st.booleans()
)


def _marketing(states: dict[tuple[str, str, str], ConsentStatus], channel: Channel) -> object:
    return states.get((channel.value, Purpose.MARKETING.value, ""))


@given(story=st.sampled_from(ConsentStory), reach=reaches, seed=st.integers(0, 2**32))
def test_a_story_ends_in_the_state_it_names(story: ConsentStory, reach: Reach, seed: int) -> None:
    plan = plan_consent(story, reach, random.Random(seed), NOW, TOPICS)
    times = [step.occurred_at for step in plan.steps]
    assert times == sorted(times)
    assert all(NOW - timedelta(days=200) < when <= NOW for when in times)
    events = [
        _Event(n, s.channel.value, s.purpose.value, "", s.action.value)
        for n, s in enumerate(plan.steps, start=1)
    ]
    states = {key: status for key, (status, _) in replay(events).items()}
    email = _marketing(states, Channel.EMAIL)
    match story:
        case ConsentStory.NEVER_ASKED:
            assert plan.steps == ()
            assert plan.preferences == {}
        case ConsentStory.TOPICS:
            assert plan.steps == ()
            assert plan.preferences["topics"]
            assert set(plan.preferences["topics"]) < set(TOPICS)
        case ConsentStory.PENDING:
            assert email is ConsentStatus.PENDING
        case ConsentStory.CONFIRMED | ConsentStory.COMPLAINED:
            assert email is ConsentStatus.GRANTED
        case ConsentStory.STOPPED if reach.phone:
            assert email is ConsentStatus.GRANTED
            assert _marketing(states, Channel.SMS) is ConsentStatus.REVOKED
            assert states[(Channel.SMS.value, Purpose.SERVICE.value, "")] is ConsentStatus.REVOKED
            assert plan.preferences["channels"][0] == "sms"
        case ConsentStory.STOPPED | ConsentStory.UNSUBSCRIBED:
            assert email is ConsentStatus.REVOKED
    if not reach.phone:
        assert all(step.channel is not Channel.SMS for step in plan.steps)
    if not reach.telegram:
        assert all(step.channel is not Channel.TELEGRAM for step in plan.steps)


@given(story=st.sampled_from(ConsentStory), reach=reaches, seed=st.integers(0, 2**32))
def test_every_grant_carries_the_wording_in_the_customers_language(
    story: ConsentStory, reach: Reach, seed: int
) -> None:
    plan = plan_consent(story, reach, random.Random(seed), NOW, TOPICS)
    for step in plan.steps:
        if step.action is Action.GRANT:
            wording = step.evidence["wording"]
            assert ("Sí" in wording) == (reach.language == "es"), wording


def test_the_same_seed_plans_the_same_history() -> None:
    reach = Reach("es", phone=True, telegram=True)
    first = plan_consent(ConsentStory.STOPPED, reach, random.Random(5), NOW, TOPICS)
    again = plan_consent(ConsentStory.STOPPED, reach, random.Random(5), NOW, TOPICS)
    assert first == again
