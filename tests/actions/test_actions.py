"""Each action through `EmbeddedActions` (rasa-sdk's executor) against a real database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from actions import ActionDeps, EmbeddedActions, configure
from actions.callback import callback_confirmation, parse_requested_time
from actions.deps import ActionsNotConfigured, deps, spoken_appointment
from actions.order_status import normalise_order_number
from consent.ledger import consent_history
from consent.tokens import LinkSigner, PreferenceLink
from consent.types import Channel
from crm_core.customers import upsert_customer
from crm_core.models import Identity, Interaction, InteractionKind
from crm_core.records import parse_customer
from crm_core.timeline import add_interaction
from sastre.db import SessionMaker

SECRET = b"test-secret-key-0123456789"
PUBLIC_URL = "https://shop.example"
ORDERED_AT = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)


@pytest.fixture
def action_deps(sessionmaker: SessionMaker) -> Iterator[ActionDeps]:
    value = ActionDeps(
        sessionmaker=sessionmaker,
        default_region="ES",
        default_timezone="Europe/Madrid",
        public_url=PUBLIC_URL,
        secret=SECRET,
        brand="Sastre Shop",
    )
    configure(value)
    yield value
    configure(None)


@pytest.fixture
def embedded(action_deps: ActionDeps) -> EmbeddedActions:
    return EmbeddedActions()


async def new_customer(
    session: AsyncSession,
    external_id: str,
    *,
    language: str,
    timezone: str = "Europe/Madrid",
    phone: str | None = None,
) -> int:
    fields = {
        "external_id": external_id,
        "name": "Lucía Pérez" if language == "es" else "Jane Doe",
        "language": language,
        "timezone": timezone,
    }
    record = parse_customer({**fields, "phone": phone} if phone else fields, "ES")
    customer, _ = await upsert_customer(session, record)
    return customer.id


async def add_purchase(session: AsyncSession, customer_id: int, **data: Any) -> None:
    await add_interaction(
        session,
        customer_id,
        InteractionKind.PURCHASE,
        f"Purchase {data['order_id']}",
        data=data,
        occurred_at=ORDERED_AT,
    )


async def run(
    embedded: EmbeddedActions,
    name: str,
    customer_id: int,
    *,
    text: str = "",
    intent: str = "",
    entities: list[dict[str, Any]] | None = None,
    slots: dict[str, Any] | None = None,
    session: AsyncSession | None = None,
) -> Any:
    return await embedded.run(
        name,
        customer_id=customer_id,
        text=text,
        intent=intent,
        confidence=0.9,
        entities=entities or [],
        slots=slots or {},
        session=session,
    )


async def count(session: AsyncSession, kind: InteractionKind) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(Interaction).where(Interaction.kind == kind.value)
        )
        or 0
    )


# --- action_order_status


async def test_order_status_in_spanish_matches_loosely(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-1", language="es")
        await add_purchase(
            session, customer_id, order_id="SO-123456", item="camisa de lino", amount=59.9
        )
        await add_purchase(
            session, customer_id, order_id="SO-777777", item="abrigo", amount=120, status="shipped"
        )
    outcome = await run(
        embedded,
        "action_order_status",
        customer_id,
        text="¿dónde está mi pedido #so-123456?",
        intent="order_status",
        entities=[{"entity": "order_number", "value": "#so-123456"}],
    )
    assert outcome.texts == [
        "Tu pedido SO-123456 (camisa de lino), realizado el 2 de marzo de 2026: recibido."
    ]
    assert outcome.slots == {"order_number": "SO-123456"}
    assert outcome.handoff is None


async def test_order_status_in_english_from_the_slot(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-2", language="en")
        await add_purchase(
            session, customer_id, order_id="SO-777777", item="wool coat", status="shipped"
        )
    outcome = await run(
        embedded, "action_order_status", customer_id, slots={"order_number": "so-777777"}
    )
    assert outcome.texts == ["Your order SO-777777 (wool coat), placed on 2 March 2026: shipped."]


async def test_order_status_asks_for_the_number(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-3", language="es")
    outcome = await run(embedded, "action_order_status", customer_id, text="mi pedido")
    assert outcome.texts[0].startswith("¿Cuál es tu número de pedido?")
    assert outcome.events == []


async def test_order_status_of_someone_elses_order_is_not_found(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    async with sessionmaker.begin() as session:
        owner = await new_customer(session, "C-4", language="en")
        other = await new_customer(session, "C-5", language="en")
        await add_purchase(session, owner, order_id="SO-111111", item="scarf")
    outcome = await run(
        embedded,
        "action_order_status",
        other,
        entities=[{"entity": "order_number", "value": "SO-111111"}],
    )
    assert outcome.texts == [
        "I can't find an order SO-111111 under your name. Please check the number, "
        "or I can pass you to a member of our team."
    ]


def test_order_numbers_are_normalised() -> None:
    assert normalise_order_number("  # so-42 ") == "SO-42"


# --- action_request_callback


def next_weekday_at_ten(timezone: ZoneInfo) -> datetime:
    tomorrow = datetime.now(timezone) + timedelta(days=2)
    return tomorrow.replace(hour=10, minute=0, second=0, microsecond=0)


async def test_callback_is_recorded_and_confirmed_in_spanish(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    madrid = ZoneInfo("Europe/Madrid")
    when = next_weekday_at_ten(madrid)
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-6", language="es", phone="+34612345678")
    outcome = await run(
        embedded,
        "action_request_callback",
        customer_id,
        text="llamadme pasado mañana a las 10",
        entities=[{"entity": "datetime", "value": when.isoformat()}],
        slots={"channel": "sms"},
    )
    assert outcome.texts == [f"Te llamaremos {spoken_appointment(when, 'es', with_month=False)}."]
    assert outcome.texts[0].endswith(f" {when.day} a las 10:00.")
    assert outcome.slots == {"callback_time": when.isoformat(), "awaiting": None}
    async with sessionmaker() as session:
        stored = await session.scalar(
            select(Interaction).where(Interaction.kind == InteractionKind.CALLBACK.value)
        )
    assert stored is not None
    assert stored.customer_id == customer_id
    assert stored.data == {
        "requested_for": when.isoformat(),
        "channel": "sms",
        "status": "requested",
        "phone": "+34612345678",
    }


async def test_callback_naive_time_is_the_customers_local_time_in_english(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    new_york = ZoneInfo("America/New_York")
    when = next_weekday_at_ten(new_york)
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(
            session, "C-7", language="en", timezone="America/New_York", phone="+12125550123"
        )
    outcome = await run(
        embedded,
        "action_request_callback",
        customer_id,
        slots={"callback_time": when.replace(tzinfo=None).isoformat(), "channel": "webchat"},
    )
    weekday = when.strftime("%A")
    assert outcome.texts == [f"We'll call you on {weekday} {when.day} at 10:00."]


async def test_callback_without_a_time_asks_when(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-8", language="en")
    outcome = await run(embedded, "action_request_callback", customer_id, text="call me")
    assert outcome.texts[0].startswith("When would you like us to call you?")
    async with sessionmaker() as session:
        assert await count(session, InteractionKind.CALLBACK) == 0


async def test_callback_in_the_past_is_refused(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-9", language="es")
    past = datetime.now(UTC) - timedelta(hours=1)
    outcome = await run(
        embedded,
        "action_request_callback",
        customer_id,
        entities=[{"entity": "datetime", "value": past.isoformat()}],
    )
    assert outcome.texts == ["Esa hora ya ha pasado. ¿Cuándo quieres que te llamemos?"]
    assert outcome.slots == {"callback_time": None, "awaiting": None}
    async with sessionmaker() as session:
        assert await count(session, InteractionKind.CALLBACK) == 0


def test_callback_helpers() -> None:
    madrid = ZoneInfo("Europe/Madrid")
    assert parse_requested_time("not a time", madrid) is None
    when = datetime(2026, 3, 24, 9, 0, tzinfo=UTC)  # 10:00 in Madrid, a Tuesday
    now = datetime(2026, 3, 20, tzinfo=UTC)
    assert (
        callback_confirmation(when, madrid, "es", now=now)
        == "Te llamaremos el martes 24 a las 10:00."
    )
    later = datetime(2026, 3, 1, tzinfo=UTC)
    assert (
        callback_confirmation(when, madrid, "en", now=later)
        == "We'll call you on Tuesday 24 March at 10:00."
    )


async def test_callback_without_a_known_phone_asks_for_one_and_waits(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    """A promise nobody can keep: a web chat visitor with no phone was told "we'll call you"."""
    madrid = ZoneInfo("Europe/Madrid")
    when = next_weekday_at_ten(madrid)
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-16", language="es")
    outcome = await run(
        embedded,
        "action_request_callback",
        customer_id,
        text="llamadme pasado mañana a las 10",
        entities=[{"entity": "datetime", "value": when.isoformat()}],
        slots={"channel": "webchat"},
    )
    (text,) = outcome.texts
    assert text.startswith("¿A qué número de teléfono te llamamos el ")
    assert "Te llamaremos" not in text
    assert outcome.slots == {"callback_time": when.isoformat(), "awaiting": "callback_phone"}
    async with sessionmaker() as session:
        assert await count(session, InteractionKind.CALLBACK) == 0


async def test_a_phone_given_for_a_waiting_callback_is_linked_and_confirmed(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    madrid = ZoneInfo("Europe/Madrid")
    when = next_weekday_at_ten(madrid)
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-17", language="es")
    waiting = {
        "channel": "webchat",
        "callback_time": when.isoformat(),
        "awaiting": "callback_phone",
    }
    unclear = await run(embedded, "action_request_callback", customer_id, text="12", slots=waiting)
    assert unclear.texts[0].startswith("Ese número no parece un teléfono")
    assert unclear.slots["awaiting"] == "callback_phone"
    outcome = await run(
        embedded,
        "action_request_callback",
        customer_id,
        text="mi móvil es 612 345 678",
        slots=waiting,
    )
    spoken = spoken_appointment(when, "es", with_month=False)
    assert outcome.texts == [f"Gracias. Te llamaremos al +34 612 34 56 78 {spoken}."]
    assert outcome.slots == {"callback_time": when.isoformat(), "awaiting": None}
    async with sessionmaker() as session:
        phone = await session.get(Identity, ("phone", "+34612345678"))
        stored = await session.scalar(
            select(Interaction).where(Interaction.kind == InteractionKind.CALLBACK.value)
        )
    assert phone is not None
    assert (phone.customer_id, phone.verified) == (customer_id, False)
    assert stored is not None
    assert stored.data["phone"] == "+34612345678"


async def test_someone_elses_phone_goes_on_the_callback_but_is_not_linked(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    when = next_weekday_at_ten(ZoneInfo("Europe/Madrid"))
    async with sessionmaker.begin() as session:
        owner = await new_customer(session, "C-18", language="en", phone="+34612345678")
        visitor = await new_customer(session, "C-19", language="en")
    outcome = await run(
        embedded,
        "action_request_callback",
        visitor,
        text="+34 612 345 678",
        slots={"callback_time": when.isoformat(), "awaiting": "callback_phone"},
    )
    assert outcome.texts[0].startswith("Thanks. We'll call you at +34 612 34 56 78 on ")
    async with sessionmaker() as session:
        phone = await session.get(Identity, ("phone", "+34612345678"))
    assert phone is not None
    assert phone.customer_id == owner


async def test_writes_belong_to_the_given_session(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    """In-process, the action writes in the inbound message's transaction: rolled back, gone."""
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-10", language="en", phone="+34612345678")
    when = datetime.now(UTC) + timedelta(days=1)
    async with sessionmaker() as session:
        transaction = await session.begin()
        outcome = await run(
            embedded,
            "action_request_callback",
            customer_id,
            entities=[{"entity": "datetime", "value": when.isoformat()}],
            session=session,
        )
        assert outcome.texts[0].startswith("We'll call you")
        assert await count(session, InteractionKind.CALLBACK) == 1
        await transaction.rollback()
    async with sessionmaker() as session:
        assert await count(session, InteractionKind.CALLBACK) == 0


# --- action_update_preferences


async def test_preferences_link_is_signed_for_the_customer_and_channel(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-11", language="es")
    outcome = await run(
        embedded, "action_update_preferences", customer_id, slots={"channel": "telegram"}
    )
    (text,) = outcome.texts
    prefix = "Puedes elegir qué te enviamos, por dónde y cuándo aquí: "
    assert text.startswith(prefix + PUBLIC_URL + "/preferences/")
    token = text.removeprefix(prefix + PUBLIC_URL + "/preferences/")
    assert LinkSigner(SECRET).read_preferences(token) == PreferenceLink(
        customer_id, Channel.TELEGRAM
    )


async def test_preferences_without_a_known_channel_gives_no_link(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-12", language="en")
    outcome = await run(embedded, "action_update_preferences", customer_id)
    assert "/preferences/" not in outcome.texts[0]
    assert outcome.texts[0].startswith("I can't give you your preferences link")


# --- action_opt_out


async def test_opt_out_revokes_marketing_on_the_channel(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-13", language="en")
    text = "please stop sending me offers"
    outcome = await run(
        embedded, "action_opt_out", customer_id, text=text, slots={"channel": "email"}
    )
    assert outcome.texts == [
        "Done: we won't send you any more marketing messages by e-mail. "
        "We'll still answer anything you ask us."
    ]
    async with sessionmaker() as session:
        (event,) = await consent_history(session, customer_id)
    assert (event.channel, event.purpose, event.action, event.source, event.actor) == (
        "email",
        "marketing",
        "revoke",
        "keyword",
        "customer",
    )
    assert event.evidence["text"] == text


@pytest.mark.parametrize(
    "text",
    [
        "quiero devolver una camisa que no me queda bien",
        "mi código de descuento no funciona",
        "olvidé mi contraseña de la web",
    ],
)
async def test_a_guessed_opt_out_asks_and_changes_nothing(
    sessionmaker: SessionMaker, embedded: EmbeddedActions, text: str
) -> None:
    """The intent model's guess alone never withdraws consent: it asks."""
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-20", language="es")
    outcome = await run(
        embedded, "action_opt_out", customer_id, text=text, slots={"channel": "webchat"}
    )
    assert outcome.texts == [
        "¿Quieres dejar de recibir mensajes comerciales por el chat web? "
        "Responde SÍ para confirmarlo."
    ]
    assert outcome.slots == {"awaiting": "opt_out_confirmation", "opt_out_request": text}
    async with sessionmaker() as session:
        assert await consent_history(session, customer_id) == []


async def test_a_confirmed_opt_out_is_recorded_with_the_request_and_the_answer(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-21", language="es")
    asked = {"channel": "sms", "awaiting": "opt_out_confirmation", "opt_out_request": "ya vale"}
    outcome = await run(embedded, "action_opt_out", customer_id, text="Sí", slots=asked)
    assert outcome.texts[0].startswith("Hecho: no te enviaremos más mensajes comerciales por SMS")
    assert outcome.slots == {"awaiting": None, "opt_out_request": None}
    async with sessionmaker() as session:
        (event,) = await consent_history(session, customer_id)
    assert (event.channel, event.purpose, event.action) == ("sms", "marketing", "revoke")
    assert event.evidence["text"] == "ya vale"
    assert event.evidence["confirmed_by"] == "Sí"


async def test_a_no_to_the_question_keeps_consent_and_closes_the_question(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    """As a Rasa server runs it: the `awaiting` slot still set when "no" reads as an opt-out."""
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-23", language="en")
    asked = {"channel": "email", "awaiting": "opt_out_confirmation", "opt_out_request": "ugh"}
    outcome = await run(embedded, "action_opt_out", customer_id, text="No", slots=asked)
    assert outcome.texts == [
        "OK, nothing changes: your marketing messages by e-mail stay as they were."
    ]
    assert outcome.slots == {"awaiting": None, "opt_out_request": None}
    async with sessionmaker() as session:
        assert await consent_history(session, customer_id) == []


async def test_a_yes_with_no_question_asked_changes_nothing(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-22", language="en")
    await run(embedded, "action_opt_out", customer_id, text="yes", slots={"channel": "sms"})
    async with sessionmaker() as session:
        assert await consent_history(session, customer_id) == []


async def test_opt_out_in_spanish_rolls_back_with_the_message(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-14", language="es")
    async with sessionmaker() as session:
        transaction = await session.begin()
        outcome = await run(
            embedded,
            "action_opt_out",
            customer_id,
            text="no me escribáis más",
            slots={"channel": "sms"},
            session=session,
        )
        assert outcome.texts[0].startswith("Hecho: no te enviaremos más mensajes comerciales")
        await transaction.rollback()
    async with sessionmaker() as session:
        assert await consent_history(session, customer_id) == []


# --- action_customer_profile and action_handoff


async def test_profile_sets_the_personalisation_slots(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-15", language="es")
    outcome = await run(embedded, "action_customer_profile", customer_id)
    assert outcome.texts == []
    assert outcome.slots == {
        "customer_name": "Lucía Pérez",
        "tier": "STANDARD",
        "language": "es",
        "timezone": "Europe/Madrid",
    }


@pytest.mark.parametrize(
    ("slots", "reason", "notice"),
    [
        ({"language": "es"}, "customer_asked", "Te paso con una persona de nuestro equipo;"),
        (
            {"language": "en", "handoff_reason": "complaint"},
            "complaint",
            "I'm passing you to a member of our team;",
        ),
    ],
)
async def test_handoff_signals_the_reason(
    embedded: EmbeddedActions, slots: dict[str, Any], reason: str, notice: str
) -> None:
    outcome = await run(embedded, "action_handoff", 1, slots=slots)
    assert outcome.texts[0].startswith(notice)
    assert outcome.handoff == reason
    assert outcome.slots == {"handoff_reason": reason}


def test_deps_must_be_configured() -> None:
    configure(None)
    with pytest.raises(ActionsNotConfigured):
        deps()


def test_every_action_is_registered(action_deps: ActionDeps) -> None:
    assert sorted(EmbeddedActions().names) == [
        "action_customer_profile",
        "action_handoff",
        "action_opt_out",
        "action_order_status",
        "action_request_callback",
        "action_update_preferences",
    ]


async def test_a_phone_given_by_an_unproven_sender_goes_on_the_callback_but_is_not_linked(
    sessionmaker: SessionMaker, embedded: EmbeddedActions
) -> None:
    """A forged From could otherwise tie the writer's own number to the customer's record, and
    then text in as them."""
    when = next_weekday_at_ten(ZoneInfo("Europe/Madrid"))
    async with sessionmaker.begin() as session:
        customer_id = await new_customer(session, "C-20", language="en")
    outcome = await run(
        embedded,
        "action_request_callback",
        customer_id,
        text="+34 612 345 678",
        slots={
            "channel": "email",
            "sender_proven": False,
            "callback_time": when.isoformat(),
            "awaiting": "callback_phone",
        },
    )
    assert outcome.texts[0].startswith("Thanks. We'll call you at +34 612 34 56 78 on ")
    async with sessionmaker() as session:
        assert await session.get(Identity, ("phone", "+34612345678")) is None
        stored = await session.scalar(
            select(Interaction).where(Interaction.kind == InteractionKind.CALLBACK.value)
        )
    assert stored is not None
    assert stored.data["phone"] == "+34612345678"
