"""An SMTP server refusing our RCPT with "550 5.1.1 user unknown" says what a 5.1.1 bounce says:
the address cannot receive mail. The worker's e-mail hook marks it undeliverable in the
transaction that fails the message; a refusal of the message itself (5.7.1) keeps the address."""

from __future__ import annotations

from sqlalchemy import select

from channels.base import ChannelName, InboundMessage
from channels.email.send import SmtpEmail
from consent.models import Undeliverable
from dialog.outbox.models import OutboxEntry
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.senders import failure_hooks
from sastre.worker import Worker
from tests.dialog.test_outbox import make
from tests.support.smtp_peer import smtp_peer

ADDRESS = "ana.garcia@example.com"


async def _refused(
    sessionmaker: SessionMaker, settings: Settings, answer: str
) -> tuple[OutboxEntry, list[Undeliverable]]:
    """Ana writes; our answer to her is refused at RCPT with `answer`."""
    await make(sessionmaker).handle(
        InboundMessage(ChannelName.EMAIL, ADDRESS, "hello", f"<{answer[:3]}@example.com>")
    )
    async with smtp_peer() as peer:
        peer.rcpt_answers.append(answer)
        smtp = SmtpEmail(host="127.0.0.1", port=peer.port, sender="hola@tienda.example", tls="none")
        async with smtp:
            worker = Worker(
                sessionmaker, {ChannelName.EMAIL: smtp}, on_failure=failure_hooks(settings)
            )
            assert await worker.drain() == 1
    async with sessionmaker() as session:
        entry = (await session.scalars(select(OutboxEntry))).one()
        marked = list(await session.scalars(select(Undeliverable)))
    return entry, marked


async def test_user_unknown_at_rcpt_marks_the_address_undeliverable(
    sessionmaker: SessionMaker, settings: Settings
) -> None:
    entry, marked = await _refused(sessionmaker, settings, "550 5.1.1 <x>: User unknown")
    assert (entry.state, entry.error_code) == ("failed", "5.1.1")
    assert [(m.channel, m.address, m.reason) for m in marked] == [
        ("email", ADDRESS, "refused 5.1.1")
    ]


async def test_a_refusal_of_the_message_keeps_the_address(
    sessionmaker: SessionMaker, settings: Settings
) -> None:
    entry, marked = await _refused(sessionmaker, settings, "550 5.7.1 rejected by policy")
    assert (entry.state, entry.error_code) == ("failed", "5.7.1")
    assert marked == []
