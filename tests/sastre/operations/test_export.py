"""The GDPR access request holds everything Sastre holds about the person, merged records too."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from consent.ledger import record_consent
from consent.models import ContactMade, Preferences, Undeliverable
from consent.types import Action, Channel, Purpose, Source
from crm_core.customers import upsert_customer
from crm_core.models import AuditEntry, CustomerTier, InteractionKind
from crm_core.records import parse_customer
from crm_core.timeline import add_interaction
from dialog.models import AwaitingBot, Conversation, LabelledExample, Message
from dialog.outbox.models import DeliveryAttempt, OutboxEntry
from sastre.db import SessionMaker
from sastre.operations import do_export_customer, do_merge_customers
from sastre.operations.owned import OWNED_TABLES

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ACTOR = "supervisor:luis"


async def a_person_in_every_table(sessionmaker: SessionMaker) -> tuple[int, int]:
    """Two records of Ana, between them a row in every table a customer owns; then merged."""
    async with sessionmaker.begin() as session:
        ana, _ = await upsert_customer(
            session, parse_customer({"external_id": "SHOP-1", "email": "ana@example.com"}, "ES")
        )
        lead, _ = await upsert_customer(
            session, parse_customer({"external_id": "WEB-9", "phone": "+34612345678"}, "ES")
        )
        session.add(CustomerTier(customer_id=ana.id, reason="top 5% by profit", updated_at=T0))
        await add_interaction(session, ana.id, InteractionKind.PURCHASE, "shoes")
        await record_consent(
            session,
            lead.id,
            Channel.SMS,
            Purpose.MARKETING,
            Action.GRANT,
            Source.WEB_FORM,
            actor="customer",
            evidence={"wording": "SMS offers", "ip": "203.0.113.9"},
        )
        session.add(Preferences(customer_id=lead.id, channels=["sms"], language="es"))
        session.add(ContactMade(customer_id=ana.id, channel="email", purpose="marketing", at=T0))
        session.add(
            Undeliverable(
                customer_id=lead.id, channel="sms", address="+34612345678", reason="21610", at=T0
            )
        )
        conversation = Conversation(
            customer_id=lead.id,
            state="queued",
            channel="sms",
            address="+34612345678",
            waiting_since=T0,
        )
        session.add(conversation)
        await session.flush()
        asked = Message(
            conversation_id=conversation.id,
            customer_id=lead.id,
            channel="sms",
            direction="in",
            provider_id="SM1",
            address="+34612345678",
            text="quiero hablar con una persona",
            author="customer",
        )
        session.add(asked)
        answer = Message(
            conversation_id=conversation.id,
            customer_id=lead.id,
            channel="sms",
            direction="out",
            provider_id="out-1",
            address="+34612345678",
            text="Le paso con un compañero.",
            author="bot",
        )
        session.add(answer)
        await session.flush()
        session.add(AwaitingBot(message_id=asked.id, asked_at=T0))
        session.add(
            LabelledExample(
                text=asked.text,
                language="es",
                label="faq:opening-hours",
                source="choice",
                conversation_id=conversation.id,
                message_id=asked.id,
                created_at=T0,
            )
        )
        session.add(OutboxEntry(message_id=answer.id, channel="sms", state="sent", due_at=T0))
        session.add(DeliveryAttempt(message_id=answer.id, worker="w1", outcome="sent", at=T0))
    await do_merge_customers(sessionmaker, ana.id, lead.id, actor=ACTOR)
    return ana.id, lead.id


async def test_every_registered_table_has_its_section_filled(sessionmaker: SessionMaker) -> None:
    ana, _ = await a_person_in_every_table(sessionmaker)
    document = await do_export_customer(sessionmaker, ana, actor=ACTOR)
    empty = [owned.key for owned in OWNED_TABLES if not document[owned.key]]
    # A table added to the registry needs a row in `a_person_in_every_table` too.
    assert not empty, f"empty sections: {empty}"


async def test_the_export_holds_every_message_in_and_out_and_the_conversation(
    sessionmaker: SessionMaker,
) -> None:
    ana, _ = await a_person_in_every_table(sessionmaker)
    document = await do_export_customer(sessionmaker, ana, actor=ACTOR)
    assert {(m["direction"], m["text"]) for m in document["messages"]} == {
        ("in", "quiero hablar con una persona"),
        ("out", "Le paso con un compañero."),
    }
    [conversation] = document["conversations"]
    assert (conversation["state"], conversation["customer_id"]) == ("queued", ana)


async def test_a_merged_id_exports_the_whole_person_with_the_tombstones_ledger(
    sessionmaker: SessionMaker,
) -> None:
    ana, lead = await a_person_in_every_table(sessionmaker)
    document: dict[str, Any] = await do_export_customer(sessionmaker, lead, actor=ACTOR)
    assert (document["customer_id"], document["merged_ids"]) == (ana, [lead])
    customer = document["customer"]
    assert customer["tier_reason"] == "top 5% by profit"
    assert {r["id"] for r in customer["records"]} == {ana, lead}
    ledger = {(e["customer_id"], e["source"]) for e in document["consent_events"]}
    assert ledger == {(lead, "web_form"), (ana, "merge")}
    assert document["consent_events"][0]["evidence"]["ip"] == "203.0.113.9"  # the person's own
    assert {i["kind"] for i in document["identities"]} == {"email", "phone", "external"}
    actions = [a["action"] for a in document["audit_log"]]
    assert {"customer.merge", "customer.export"} <= set(actions)


async def test_the_tombstones_consent_shows_through_its_events_not_a_stale_state(
    sessionmaker: SessionMaker,
) -> None:
    ana, lead = await a_person_in_every_table(sessionmaker)  # the lead's SMS grant was pending
    document: dict[str, Any] = await do_export_customer(sessionmaker, ana, actor=ACTOR)
    states = {(s["customer_id"], s["channel"], s["status"]) for s in document["consent_state"]}
    assert states == {(ana, "sms", "pending")}
    [own] = [e for e in document["consent_events"] if e["customer_id"] == lead]
    assert (own["channel"], own["action"], own["source"]) == ("sms", "grant", "web_form")


async def test_the_export_itself_is_audited(sessionmaker: SessionMaker) -> None:
    ana, lead = await a_person_in_every_table(sessionmaker)
    await do_export_customer(sessionmaker, lead, actor=ACTOR)
    async with sessionmaker() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "customer.export")
        )
    assert entry is not None
    assert (entry.actor, entry.customer_id, entry.data) == (ACTOR, ana, {"asked_for": lead})
