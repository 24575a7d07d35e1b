"""What a keyword does and answers, through an inbound turn: one confirmation per opt-out
(SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select

from channels.base import ChannelName, InboundMessage
from consent.ledger import consent_history, record_consent
from consent.replies import Brand
from consent.types import Action, Channel, Purpose, Source
from crm_core.models import AuditEntry, Customer
from dialog.inbound import InboundProcessor
from sastre.db import SessionMaker
from tests.dialog.test_inbound import FakeBrain

_ids = itertools.count()


@pytest.fixture
def processor(sessionmaker: SessionMaker) -> InboundProcessor:
    return InboundProcessor(
        sessionmaker,
        FakeBrain(),
        default_region="US",
        default_language="en",
        default_timezone="UTC",
        brand=Brand("Sastre", "support@example.com"),
    )


def sms(text: str, sender: str = "+12135550901") -> InboundMessage:
    return InboundMessage(ChannelName.SMS, sender, text, f"SM-replies-{next(_ids)}")


async def replies(
    processor: InboundProcessor, text: str, sender: str = "+12135550901"
) -> list[str]:
    return [reply.text for reply in (await processor.handle(sms(text, sender))).replies]


async def test_a_repeated_stop_is_not_confirmed_again_but_audited(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    [confirmation] = await replies(processor, "STOP")
    assert confirmation.startswith("You are unsubscribed")
    for again in ("STOP", "stop", "UNSUBSCRIBE", "please stop texting me"):
        assert await replies(processor, again) == [], again
    async with sessionmaker() as session:
        customer = await session.scalar(select(Customer.id))
        history = await consent_history(session, customer or 0)
        repeats = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "consent.keyword_repeated")
            )
        )
    assert len(history) == 2  # the first STOP's two revocations, nothing more
    assert [entry.data["keyword"] for entry in repeats] == [
        "STOP",
        "STOP",
        "UNSUBSCRIBE",
        "STOP",
    ]
    assert all(entry.data["channel"] == "sms" for entry in repeats)


async def test_help_after_stop_is_kept_but_not_answered_until_start(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    [helped] = await replies(processor, "HELP")
    await replies(processor, "STOP")
    assert await replies(processor, "HELP") == []  # one confirmation, nothing else until START
    assert await replies(processor, "AYUDA") == []
    await replies(processor, "START")
    assert await replies(processor, "HELP") == [helped]
    async with sessionmaker() as session:
        kept = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "consent.help_while_stopped")
            )
        )
    assert [(entry.data["keyword"], entry.data["channel"]) for entry in kept] == [
        ("HELP", "sms"),
        ("AYUDA", "sms"),
    ]


async def test_help_is_not_answered_while_stop_holds_even_with_marketing_granted_since(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    await replies(processor, "STOP")
    async with sessionmaker.begin() as session:  # a marketing grant on the web, not a START
        customer = await session.scalar(select(Customer.id))
        assert customer is not None
        await record_consent(
            session,
            customer,
            Channel.SMS,
            Purpose.MARKETING,
            Action.GRANT,
            Source.WEB_FORM,
            actor="customer",
            evidence={"form": "preferences"},
        )
    assert await replies(processor, "HELP") == []


async def test_a_stop_after_start_is_a_new_opt_out_and_confirmed(
    processor: InboundProcessor,
) -> None:
    await replies(processor, "STOP")
    [started] = await replies(processor, "START")
    assert "resubscribed" in started
    [again] = await replies(processor, "STOP")
    assert again.startswith("You are unsubscribed")
