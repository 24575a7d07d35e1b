"""Benchmark: how fast workers drain the outbox to a provider that answers at once.

    .venv/bin/python -m bench.outbox_drain [--messages 100000] [--database postgresql|sqlite]
                                           [--workers 2] [--concurrency 256]

Queues N outbound SMS (rows written in bulk, as many inbound batches would), then runs workers
(each its own claim → calls → results rounds, as `sastre worker` does, rate limits off) against
fake senders until the outbox is empty, and prints messages/s beside the fake's own ceiling
(the same sends with no database at all). PostgreSQL is a throwaway server started for the run
(as the test suite does) unless SASTRE_TEST_POSTGRES_URL names one. Target (issue #10):
>= 2,000 messages/s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import func, insert, select

from channels.base import ChannelName, OutboundMessage
from channels.fake import FakeSender
from crm_core.models import Customer
from crm_core.sqltypes import utcnow
from dialog.models import Conversation, messages_table
from dialog.outbox import enqueue, outbox_row
from dialog.outbox.models import OutboxEntry
from sastre.db import database, migrate
from sastre.worker import Worker

CHUNK = 5_000


@contextlib.contextmanager
def _database_url(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        return
    from tests.support.servers import postgres_server

    with postgres_server() as url:
        yield url


async def _queue(url: str, n: int) -> None:
    async with database(url) as (_, sessionmaker):
        async with sessionmaker.begin() as session:
            customer = Customer(name="Bench")
            session.add(customer)
            await session.flush()
            conversation = Conversation(
                customer_id=customer.id, channel="sms", address="+14155550100"
            )
            session.add(conversation)
            await session.flush()
            ids = (customer.id, conversation.id)
        now = utcnow()
        for start in range(0, n, CHUNK):
            rows = [
                {
                    "conversation_id": ids[1],
                    "customer_id": ids[0],
                    "channel": "sms",
                    "direction": "out",
                    "provider_id": f"bench-{i}",
                    "address": "+14155550100",
                    "text": f"message {i}",
                    "attachments": [],
                    "author": "bot",
                    "created_at": now,
                }
                for i in range(start, min(n, start + CHUNK))
            ]
            async with sessionmaker.begin() as session:
                stored = await session.execute(
                    insert(messages_table).returning(messages_table.c.id), rows
                )
                await enqueue(session, [outbox_row(id_, "sms", now) for id_ in stored.scalars()])


async def _ceiling(n: int) -> float:
    fake = FakeSender()
    message = OutboundMessage(ChannelName.SMS, "+14155550100", "hi")
    started = time.perf_counter()
    for _ in range(n):
        await fake.send(message)
    return n / (time.perf_counter() - started)


async def _drain(url: str, workers: int, concurrency: int) -> tuple[int, float]:
    async with database(url) as (_, sessionmaker):
        pool = [
            Worker(sessionmaker, {ChannelName.SMS: FakeSender()}, concurrency=concurrency)
            for _ in range(workers)
        ]
        started = time.perf_counter()
        handled = await asyncio.gather(*(worker.drain() for worker in pool))
        elapsed = time.perf_counter() - started
        async with sessionmaker() as session:
            sent = await session.scalar(
                select(func.count()).select_from(OutboxEntry).where(OutboxEntry.state == "sent")
            )
        assert sent == sum(handled), (sent, handled)
        return int(sent or 0), elapsed


async def _run(args: argparse.Namespace) -> None:
    with _database_url(args.database) as url:
        await migrate(url)
        queued_at = time.perf_counter()
        await _queue(url, args.messages)
        print(f"queued {args.messages:,} messages in {time.perf_counter() - queued_at:.1f} s")
        sent, elapsed = await _drain(url, args.workers, args.concurrency)
        ceiling = await _ceiling(args.messages)
        print(
            f"{args.database}: drained {sent:,} in {elapsed:.1f} s = {sent / elapsed:,.0f} "
            f"messages/s ({args.workers} workers x {args.concurrency} in flight); "
            f"the fake sender alone: {ceiling:,.0f}/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=256)
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
