"""Files with no words (a photo-only MMS): acknowledged and handed to a person, never answered
"could you say it in other words?" nor counted as a turn the bot failed to understand."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from crm_core.models import Tier
from dialog.models import Conversation, Direction, Message
from dialog.nlu import INTENTS, Understanding
from dialog.selfservice import BrainConfig, PlanKind, plan_turn
from sastre.db import SessionMaker
from tests.sastre.test_webhooks_twilio import (  # noqa: F401 (fixtures)
    INBOUND,
    Client,
    fixture,
    post,
    sms_settings,
    twilio_client,
)

CONFIG = BrainConfig()


def read(text: str, intent: str, confidence: float) -> Understanding:
    return Understanding(text, intent, confidence, "en", (), ((intent, confidence),))


@given(
    st.sampled_from(["", " ", "\n\t "]),
    st.sampled_from(sorted(INTENTS)),
    st.floats(0, 1),
    st.integers(1, 10),
    st.sampled_from(list(Tier)),
    st.integers(0, 5),
)
def test_attachments_with_no_text_go_to_a_person_whatever_was_read(
    text: str, intent: str, confidence: float, attachments: int, tier: Tier, failed: int
) -> None:
    plan = plan_turn(
        read(text, intent, confidence),
        None,
        tier=tier,
        failed_turns=failed,
        config=CONFIG,
        attachments=attachments,
    )
    assert (plan.kind, plan.handoff) == (PlanKind.HANDOFF, "attachment")
    assert "attachment" in plan.reason


@given(
    st.text(min_size=1).filter(str.strip),
    st.sampled_from(sorted(INTENTS)),
    st.floats(0, 1),
    st.integers(1, 10),
    st.sampled_from(list(Tier)),
    st.integers(0, 5),
)
def test_with_words_the_attachments_change_nothing(
    text: str, intent: str, confidence: float, attachments: int, tier: Tier, failed: int
) -> None:
    understood = read(text, intent, confidence)
    kw = {"tier": tier, "failed_turns": failed, "config": CONFIG}
    with_files = plan_turn(understood, None, attachments=attachments, **kw)  # type: ignore[arg-type]
    assert with_files == plan_turn(understood, None, **kw)  # type: ignore[arg-type]


def test_no_attachments_and_no_text_is_still_not_understood() -> None:
    plan = plan_turn(
        read("", "goodbye", 0.23), None, tier=Tier.STANDARD, failed_turns=0, config=CONFIG
    )
    assert plan.kind is PlanKind.REPHRASE


async def test_a_photo_only_mms_is_acknowledged_and_handed_to_a_person(
    twilio_client: Client,  # noqa: F811
    sessionmaker: SessionMaker,
) -> None:
    answer = await post(twilio_client, INBOUND, fixture("inbound_mms_two_media.txt", Body=""))
    assert answer.status == 200
    async with sessionmaker() as session:
        replies = list(
            await session.scalars(
                select(Message.text).where(Message.direction == Direction.OUT.value)
            )
        )
        conversation = (await session.scalars(select(Conversation))).one()
    assert replies == ["Thank you, we have received it; a member of our team will look at it."]
    assert conversation.state == "queued"  # waiting for a person
    assert conversation.failed_turns == 0
