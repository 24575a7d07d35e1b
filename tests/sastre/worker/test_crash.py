"""A worker killed (SIGKILL) mid-batch against a slow provider: no message is lost, and only
the calls that were in flight when it died are made again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from channels.base import ChannelName
from channels.fake import FakeSender
from crm_core.sqltypes import utcnow
from dialog.outbox.models import DeliveryAttempt, OutboxEntry
from sastre.db import SessionMaker
from sastre.worker import Worker
from tests.dialog.test_outbox import make, sms

ROOT = Path(__file__).resolve().parents[3]
CONCURRENCY = 4
SCRIPT = """
import asyncio, sys
from datetime import timedelta
from channels.base import ChannelName
from channels.fake import FakeSender
from sastre.db import create_engine, sessionmaker_for
from sastre.worker import Worker

url, log, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])

class Logged(FakeSender):
    async def send(self, message):
        with open(log, "a") as f:
            f.write(f"start {message.reference}\\n")
        provider_id = await super().send(message)
        with open(log, "a") as f:
            f.write(f"done {message.reference}\\n")
        return provider_id

async def main():
    engine = create_engine(url)
    worker = Worker(sessionmaker_for(engine), {ChannelName.SMS: Logged(delay=0.2)},
                    concurrency=concurrency, lease=timedelta(seconds=5))
    await worker.run()

asyncio.run(main())
"""


def _lines(log: Path, kind: str) -> list[str]:
    if not log.exists():
        return []
    return [line.split()[1] for line in log.read_text().splitlines() if line.startswith(kind)]


async def test_a_killed_worker_loses_nothing_and_resends_only_calls_in_flight(
    sessionmaker: SessionMaker, database_url: str, tmp_path: Path
) -> None:
    processor = make(sessionmaker)
    for n in range(20):
        await processor.handle(sms("hello", sender=f"+1415555{n:04d}"))
    script, log = tmp_path / "worker.py", tmp_path / "calls.log"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(script), database_url, str(log), str(CONCURRENCY), env=env
    )
    try:
        async with asyncio.timeout(60):
            # Another process writes the log: there is no event to wait on but the file.
            while len(_lines(log, "done")) < 6:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    started, done = _lines(log, "start"), _lines(log, "done")
    in_flight = set(started) - set(done)
    assert len(in_flight) <= CONCURRENCY
    # Another worker, once the dead one's lease has run out.
    fake = FakeSender()
    later = Worker(
        sessionmaker, {ChannelName.SMS: fake}, clock=lambda: utcnow() + timedelta(seconds=10)
    )
    await later.drain()
    async with sessionmaker() as session:
        states = (await session.scalars(select(OutboxEntry.state))).all()
        ids = (await session.scalars(select(OutboxEntry.message_id))).all()
        interrupted = (
            await session.scalars(
                select(DeliveryAttempt.message_id).where(DeliveryAttempt.outcome == "interrupted")
            )
        ).all()
    assert states == ["sent"] * 20  # nothing lost
    again = {record.message.reference for record in fake.sent}
    resent = again & set(started)
    # Made again: only calls of the round that was in flight (its results never committed).
    assert len(resent) <= CONCURRENCY
    assert resent >= in_flight
    assert len(interrupted) == len(resent)
    assert set(done) | again == {f"sastre-{n}" for n in ids}  # each reached the provider
