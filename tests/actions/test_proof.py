"""Account data only for a proven sender: order status, the profile and the preferences link
answer an unproven one generically, and note the attempt on the timeline."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from actions.deps import TrackerFacts
from actions.proof import sender_proven
from actions.runner import EmbeddedActions
from crm_core.models import Interaction, InteractionKind
from sastre.db import SessionMaker
from tests.actions.test_actions import action_deps, add_purchase, new_customer, run  # noqa: F401

pytestmark = pytest.mark.usefixtures("action_deps")  # the actions' dependencies, configured

UNPROVEN = {"sender_proven": False, "channel": "email"}


async def notes(sessionmaker: SessionMaker, customer_id: int) -> list[Interaction]:
    async with sessionmaker() as session:
        query = select(Interaction).where(
            Interaction.customer_id == customer_id, Interaction.kind == InteractionKind.NOTE.value
        )
        return list(await session.scalars(query))


async def test_order_status_is_withheld_from_an_unproven_sender(sessionmaker: SessionMaker) -> None:
    embedded = EmbeddedActions()
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "P-1", language="en")
        await add_purchase(session, customer_id, order_id="SO-123456", item="Blue shirt")
    outcome = await run(
        embedded,
        "action_order_status",
        customer_id,
        text="where is SO-123456?",
        entities=[{"entity": "order_number", "value": "SO-123456"}],
        slots=UNPROVEN,
    )
    (text,) = outcome.texts
    assert "Blue shirt" not in text
    assert text.startswith("For your security")
    (note,) = await notes(sessionmaker, customer_id)
    assert note.data["action"] == "action_order_status"
    assert note.channel == "email"


async def test_a_proven_sender_gets_the_order(sessionmaker: SessionMaker) -> None:
    embedded = EmbeddedActions()
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "P-2", language="en")
        await add_purchase(session, customer_id, order_id="SO-123456", item="Blue shirt")
    outcome = await run(
        embedded,
        "action_order_status",
        customer_id,
        entities=[{"entity": "order_number", "value": "SO-123456"}],
        slots={**UNPROVEN, "sender_proven": True},
    )
    assert "Blue shirt" in outcome.texts[0]
    assert await notes(sessionmaker, customer_id) == []


async def test_the_preferences_link_is_withheld_from_an_unproven_sender(
    sessionmaker: SessionMaker,
) -> None:
    embedded = EmbeddedActions()
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "P-3", language="es")
    outcome = await run(embedded, "action_update_preferences", customer_id, slots=UNPROVEN)
    (text,) = outcome.texts
    assert "/preferences/" not in text
    assert text.startswith("Por tu seguridad")
    (note,) = await notes(sessionmaker, customer_id)
    assert note.data["action"] == "action_update_preferences"


async def test_the_profile_is_withheld_from_an_unproven_sender(sessionmaker: SessionMaker) -> None:
    embedded = EmbeddedActions()
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "P-4", language="en")
    outcome = await run(embedded, "action_customer_profile", customer_id, slots=UNPROVEN)
    assert "customer_name" not in outcome.slots
    assert "tier" not in outcome.slots
    (note,) = await notes(sessionmaker, customer_id)
    assert note.data["action"] == "action_customer_profile"


class _RasaTracker:
    """What a Rasa server hands the action server: no slot set, Sastre's metadata on the message."""

    sender_id = "7"

    def __init__(self, metadata: dict[str, object]) -> None:
        self.slots: dict[str, object] = {}
        self.latest_message = {"text": "where is SO-123456?", "metadata": metadata}


@pytest.mark.parametrize(
    ("metadata", "proven"),
    [({"sender_proven": False}, False), ({"sender_proven": True}, True), ({}, True)],
)
def test_a_rasa_server_s_message_metadata_says_whether_the_sender_is_proven(
    metadata: dict[str, object], proven: bool
) -> None:
    assert sender_proven(TrackerFacts.of(_RasaTracker(metadata))) is proven
