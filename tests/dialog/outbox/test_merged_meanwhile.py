"""A message's delivery goes on the timeline of whoever owns the message when it is recorded:
its customer may have been merged into another while the call was out (SQLite and
PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from crm_core.models import Interaction, InteractionKind
from crm_core.sqltypes import utcnow
from dialog.models import Message
from dialog.outbox import Result
from sastre.db import SessionMaker
from sastre.operations.customers import do_merge_customers
from tests.dialog.outbox.claims import queue_replies, report, take


async def test_a_send_recorded_after_a_merge_is_on_the_surviving_customers_timeline(
    sessionmaker: SessionMaker,
) -> None:
    first, second = await queue_replies(sessionmaker, 2)
    now = utcnow()
    claimed = {c.message_id: c for c in await take(sessionmaker, "w1", now)}
    async with sessionmaker() as session:
        survivor = (await session.get_one(Message, first)).customer_id
    merged = claimed[second].customer_id
    await do_merge_customers(sessionmaker, survivor, merged, actor="staff", force=True)
    sent = Result(claimed[second], "sent", provider_id="SM-merged")
    await report(sessionmaker, sent, worker="w1", at=now + timedelta(seconds=1))
    async with sessionmaker() as session:
        entries = (
            await session.execute(
                select(Interaction.customer_id, Interaction.summary).where(
                    Interaction.kind == InteractionKind.DELIVERY.value
                )
            )
        ).all()
    assert [tuple(entry) for entry in entries] == [(survivor, "sent")]
