"""Benchmark: how fast workers drain the outbox through the real adapters to local provider fakes.

    .venv/bin/python -m bench.outbox_drain [--messages 100000] [--database postgresql|sqlite]
        [--channels sms,email,mixed] [--senders real|fake] [--processes N] [--workers 1]
        [--concurrency C] [--smtp-connections 64] [--ceiling-messages 10000]

For each of `--channels` (SMS only, e-mail only, both alternating) it queues N outbound
messages (rows written in bulk, as many inbound batches would), then runs workers until the
outbox is empty, and checks that every row is `sent` and that the fake took as many. The
workers run as `sastre worker` runs them, rate limits off: each `--processes` is a process of
its own (2 on PostgreSQL, whose claims they share; 1 on SQLite), with `--workers` workers of
`--concurrency` calls in flight each (512 in all by default), all started together.

`--senders real` (the default) sends through the senders `sastre worker` builds from its settings
(`TwilioSms` through the twilio library's async client; `SmtpEmail` through aiosmtplib, over
`--smtp-connections` connections per process) over 127.0.0.1 to the fake Twilio REST API and an
aiosmtpd peer, each in a process of its own (bench.peers). Beside each figure, the fake's own
ceiling with no database and as many sends in flight: driven by the client library alone, and
by our adapter alone (bench.provider_ceiling). `--senders fake` uses in-process `FakeSender`s
instead: the outbox's own cost, nothing sent.

The machine is shared, so each figure comes with the CPU milliseconds per message of the
worker processes, of PostgreSQL's server processes and of the fake: what the run costs,
whatever else the machine was doing.

PostgreSQL is a throwaway server started for the run (as the test suite does) unless
SASTRE_TEST_POSTGRES_URL names one. Target (issue #10): >= 2,000 messages/s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text
from typing_extensions import override

from bench import cpu
from bench.peers import ACCOUNT_SID, AUTH_TOKEN, Peer, peer_process
from bench.provider_ceiling import EMAIL_FROM, SMS_FROM, adapter_rate, library_rate
from channels.base import ChannelName, OutboundMessage, Sender
from channels.email import SmtpEmail
from channels.fake import FakeSender
from crm_core.models import Customer
from crm_core.sqltypes import utcnow
from dialog.models import Conversation, messages_table
from dialog.outbox import announce, enqueue, listen, outbox_row
from dialog.outbox.models import OutboxEntry
from sastre.config import load_settings
from sastre.db import SessionMaker, database, migrate
from sastre.senders import built_senders
from sastre.worker import Worker

CHUNK = 5_000
TARGET = 2_000
ADDRESSES = {ChannelName.SMS: "+14155550199", ChannelName.EMAIL: "cliente@example.org"}
SCENARIOS: dict[str, tuple[ChannelName, ...]] = {
    "sms": (ChannelName.SMS,),
    "email": (ChannelName.EMAIL,),
    "mixed": (ChannelName.SMS, ChannelName.EMAIL),
}


@contextlib.contextmanager
def _database_url(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        return
    from tests.support.servers import postgres_server

    with postgres_server() as url:
        yield url


# --- the queue ----------------------------------------------------------------------------------


async def _conversations(url: str) -> dict[ChannelName, tuple[int, int]]:
    """A customer and their conversation per channel: (customer id, conversation id)."""
    ids: dict[ChannelName, tuple[int, int]] = {}
    async with database(url) as (_, sessionmaker), sessionmaker.begin() as session:
        for channel, address in ADDRESSES.items():
            customer = Customer(name=f"Bench {channel.value}")
            session.add(customer)
            await session.flush()
            conversation = Conversation(
                customer_id=customer.id, channel=channel.value, address=address
            )
            session.add(conversation)
            await session.flush()
            ids[channel] = (customer.id, conversation.id)
    return ids


async def _store(
    sessionmaker: SessionMaker,
    ids: Mapping[ChannelName, tuple[int, int]],
    numbers: range,
    channels: Sequence[ChannelName],
    tag: str,
) -> None:
    """Messages `numbers` and their outbox rows in one transaction, the i-th on
    channels[i % len(channels)]."""
    now = utcnow()
    chosen = [channels[i % len(channels)] for i in numbers]
    rows: list[dict[str, Any]] = [
        {
            "conversation_id": ids[channel][1],
            "customer_id": ids[channel][0],
            "channel": channel.value,
            "direction": "out",
            "provider_id": f"bench-{tag}-{i}",
            "address": ADDRESSES[channel],
            "text": f"message {i}",
            "attachments": [],
            "author": "bot",
            "created_at": now,
        }
        for i, channel in zip(numbers, chosen, strict=True)
    ]
    async with sessionmaker.begin() as session:
        stored = await session.execute(insert(messages_table).returning(messages_table.c.id), rows)
        await enqueue(
            session,
            [
                outbox_row(
                    id_,
                    channel.value,
                    now,
                    options={"subject": "Bench"} if channel is ChannelName.EMAIL else {},
                )
                for id_, channel in zip(stored.scalars(), chosen, strict=True)
            ],
        )


async def _queue(url: str, n: int, channels: Sequence[ChannelName], tag: str) -> None:
    """N messages and their outbox rows (written in chunks, as many inbound batches would)."""
    ids = await _conversations(url)
    async with database(url) as (_, sessionmaker):
        for start in range(0, n, CHUNK):
            await _store(sessionmaker, ids, range(start, min(n, start + CHUNK)), channels, tag)
    if url.startswith("postgresql"):
        # Statistics, as autovacuum takes them within its first minute after such an insert
        # (a backlog built by many inbound batches has them): without any, PostgreSQL plans the
        # claim for an empty table and one drain spends ten times the database's CPU on it.
        async with database(url) as (engine, _), engine.connect() as conn:
            await conn.execute(text("ANALYZE outbox"))
            await conn.commit()


async def _wakeups(url: str, n: int = 20) -> list[float]:
    """An idle worker woken by each commit, as a web process's commit wakes its worker: the
    seconds from each commit to the provider's call (issue #10: within 100 ms)."""
    ids = await _conversations(url)
    called: asyncio.Queue[float] = asyncio.Queue()

    class Timed(FakeSender):
        @override
        async def send(self, message: OutboundMessage) -> str:
            called.put_nowait(time.perf_counter())
            return await super().send(message)

    latencies: list[float] = []
    async with database(url) as (_, sessionmaker):
        # A poll far longer than the bound: only the wake-up can meet it.
        worker = Worker(sessionmaker, {ChannelName.SMS: Timed(ChannelName.SMS)}, poll=30)
        undo = listen(worker.wake)
        stop = asyncio.Event()
        running = asyncio.ensure_future(worker.run(stop))
        try:
            for i in range(n):
                await asyncio.sleep(0.05)  # idle again
                await _store(sessionmaker, ids, range(i, i + 1), [ChannelName.SMS], "wake")
                committed = time.perf_counter()
                announce()
                latencies.append(await asyncio.wait_for(called.get(), 5) - committed)
        finally:
            undo()
            stop.set()
            await running
    return sorted(latencies)


# --- the senders --------------------------------------------------------------------------------


@dataclass
class Peers:
    twilio: Peer | None = None
    smtp: Peer | None = None

    def tally(self) -> dict[ChannelName, tuple[int, float]]:
        """Per channel: (messages its fake has taken, the fake's CPU seconds)."""
        counts: dict[ChannelName, tuple[int, float]] = {}
        if self.twilio is not None:
            counts[ChannelName.SMS] = self.twilio.tally()
        if self.smtp is not None:
            counts[ChannelName.EMAIL] = self.smtp.tally()
        return counts

    def of(self, channel: ChannelName) -> Peer:
        peer = self.twilio if channel is ChannelName.SMS else self.smtp
        assert peer is not None
        return peer


@dataclass(frozen=True)
class Setup:
    """What a worker process needs to build its senders, as `sastre worker` does (picklable)."""

    kind: str  # real or fake
    url: str
    twilio: str | None  # the fake Twilio's base URL
    smtp: str | None  # the SMTP peer's host:port
    workers: int
    concurrency: int
    smtp_connections: int

    @property
    def in_flight(self) -> int:
        return self.workers * self.concurrency


@contextlib.asynccontextmanager
async def _senders(setup: Setup) -> AsyncIterator[dict[ChannelName, Sender]]:
    """What `sastre worker` builds from its settings (or the in-process fakes)."""
    if setup.kind == "fake":
        yield {channel: FakeSender(channel) for channel in ADDRESSES}
        return
    assert setup.twilio is not None
    assert setup.smtp is not None
    host, port = setup.smtp.rsplit(":", 1)
    settings = load_settings(
        _env_file=None,
        database_url=setup.url,
        secret_key="bench-secret-0123456789",
        public_url="https://sastre.example.com",
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_from=SMS_FROM,
        twilio_api_base=setup.twilio,
        smtp_host=host,
        smtp_port=int(port),
        smtp_tls="none",
        email_from=EMAIL_FROM,
        # the senders' connections, as `sastre worker` sizes them
        worker_concurrency=setup.in_flight,
        smtp_connections=setup.smtp_connections,
    )
    async with built_senders(settings) as senders:
        yield senders


# --- the runs -----------------------------------------------------------------------------------


async def _drain_here(setup: Setup, pipe: Connection) -> None:
    """In a worker process: build the senders and the workers, say so, wait for the go, drain,
    and report (rows handled, CPU seconds spent draining)."""
    async with _senders(setup) as senders, database(setup.url) as (_, sessionmaker):
        pool = [
            Worker(sessionmaker, senders, concurrency=setup.concurrency)
            for _ in range(setup.workers)
        ]
        pipe.send("ready")
        await asyncio.to_thread(pipe.recv)
        started = cpu.own()
        handled = await asyncio.gather(*(worker.drain() for worker in pool))
        pipe.send((sum(handled), cpu.own() - started))


def _drain_process(setup: Setup, pipe: Connection) -> None:
    asyncio.run(_drain_here(setup, pipe))


async def _sent(url: str) -> int:
    async with database(url) as (_, sessionmaker), sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(OutboxEntry).where(OutboxEntry.state == "sent")
        )
    return int(count or 0)


def _drain(setup: Setup, processes: int) -> tuple[int, float, float]:
    """Workers in `processes` processes of their own (as `sastre worker` runs), all started
    together once ready: (rows handled, seconds, their CPU seconds)."""
    context = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    children = []
    for n in range(processes):
        ours, theirs = context.Pipe()
        child = context.Process(
            target=_drain_process, args=(setup, theirs), name=f"worker-{n}", daemon=True
        )
        child.start()
        theirs.close()
        pipes.append(ours)
        children.append(child)
    try:
        for pipe in pipes:
            if not pipe.poll(120) or pipe.recv() != "ready":
                raise RuntimeError("a worker process did not start")
        started = time.perf_counter()
        for pipe in pipes:
            pipe.send("go")
        reports = [pipe.recv() for pipe in pipes]
        elapsed = time.perf_counter() - started
    finally:
        for child in children:
            child.join(30)
            if child.is_alive():
                child.kill()
    return sum(r[0] for r in reports), elapsed, sum(r[1] for r in reports)


async def _ceilings(
    kind: str,
    senders: Mapping[ChannelName, Sender],
    channels: Sequence[ChannelName],
    peers: Peers,
    n: int,
    in_flight: int,
) -> str:
    chosen = {channel: senders[channel] for channel in channels}
    adapter = await adapter_rate(chosen, n, in_flight)
    if kind == "fake":
        return f"the fake senders alone {adapter:,.0f}/s"
    if len(channels) > 1:
        return f"our adapters alone {adapter:,.0f}/s"
    (channel,) = channels
    sender = senders[channel]
    connections = sender.connections if isinstance(sender, SmtpEmail) else in_flight
    library = await library_rate(peers.of(channel), n, in_flight, connections=connections)
    return f"ceiling: library alone {library:,.0f}/s, our adapter alone {adapter:,.0f}/s"


async def _scenario(
    args: argparse.Namespace,
    setup: Setup,
    name: str,
    senders: Mapping[ChannelName, Sender],
    peers: Peers,
) -> None:
    channels = SCENARIOS[name]
    queued_at = time.perf_counter()
    await _queue(setup.url, args.messages, channels, name)
    queued = time.perf_counter() - queued_at
    postmaster = cpu.postgres_pid(setup.url)
    before = await asyncio.to_thread(peers.tally)
    sent_before = await _sent(setup.url)
    database_cpu = cpu.tree(postmaster) if postmaster else 0.0
    handled, elapsed, worker_cpu = await asyncio.to_thread(_drain, setup, args.processes)
    database_cpu = (cpu.tree(postmaster) if postmaster else 0.0) - database_cpu
    after = await asyncio.to_thread(peers.tally)
    sent = await _sent(setup.url) - sent_before
    assert sent == handled, f"{sent} rows sent, {handled} handled"
    taken = sum(after[c][0] - before[c][0] for c in after)
    fakes = sum(after[c][1] - before[c][1] for c in after)
    per = 1000 / max(sent, 1)
    usage = f"worker {worker_cpu * per:.2f}"
    if postmaster:
        usage += f", PostgreSQL {database_cpu * per:.2f}"
    if args.senders == "real":
        usage += f", the fake {fakes * per:.2f}"
    in_flight = args.processes * setup.in_flight
    ceiling = await _ceilings(
        args.senders, senders, channels, peers, args.ceiling_messages, in_flight
    )
    rate = sent / elapsed
    check = "" if args.senders == "fake" else f"; the fakes took {taken:,}"
    print(
        f"{args.database} {name:>5}: {sent:,} drained in {elapsed:.1f} s = {rate:,.0f} msg/s "
        f"[{'PASS' if rate >= TARGET else 'MISS'} >= {TARGET:,}]  ({ceiling}){check}"
        f"  (queued in {queued:.1f} s)\n    CPU ms per message: {usage}"
    )
    if args.senders == "real":
        assert taken == sent, f"{sent} rows sent but the fakes took {taken}"


async def _run(args: argparse.Namespace, url: str, peers: Peers) -> None:
    await migrate(url)
    setup = Setup(
        kind=args.senders,
        url=url,
        twilio=peers.twilio.address if peers.twilio else None,
        smtp=peers.smtp.address if peers.smtp else None,
        workers=args.workers,
        concurrency=args.concurrency,
        smtp_connections=args.smtp_connections,
    )
    async with _senders(setup) as senders:  # for the ceilings, in this process
        for name in args.channels:
            await _scenario(args, setup, name, senders, peers)
    waits = await _wakeups(url)
    print(
        f"{args.database} idle worker, commit to provider call: "
        f"median {waits[len(waits) // 2] * 1000:.1f} ms, slowest {waits[-1] * 1000:.1f} ms "
        f"of {len(waits)} [{'PASS' if waits[-1] <= 0.1 else 'MISS'} <= 100 ms]"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox_drain", description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--channels", default="sms,email,mixed", help="comma-separated")
    parser.add_argument("--senders", choices=("real", "fake"), default="real")
    parser.add_argument(
        "--processes",
        type=int,
        help="worker processes (`sastre worker`s); default 2 on PostgreSQL, 1 on SQLite",
    )
    parser.add_argument("--workers", type=int, default=1, help="workers per process")
    parser.add_argument(
        "--concurrency", type=int, help="calls in flight per worker; default 512 in all"
    )
    parser.add_argument("--ceiling-messages", type=int, default=10_000)
    parser.add_argument(
        "--smtp-connections", type=int, default=64, help="SASTRE_SMTP_CONNECTIONS for the run"
    )
    args = parser.parse_args(argv)
    args.channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    # Several `sastre worker`s share PostgreSQL's claims (SKIP LOCKED); on SQLite they would
    # only take turns at its one write lock.
    if args.processes is None:
        args.processes = 2 if args.database == "postgresql" else 1
    if args.concurrency is None:
        args.concurrency = max(1, 512 // (args.processes * args.workers))
    for name in args.channels:
        if name not in SCENARIOS:
            parser.error(f"unknown channel mix {name!r}: use {', '.join(SCENARIOS)}")
    print(
        f"machine: {os.cpu_count()} CPUs; {args.messages:,} messages per run, "
        f"{args.processes} worker process(es) x {args.workers} worker(s) x {args.concurrency} "
        f"in flight, {args.senders} senders, "
        f"{args.smtp_connections} SMTP connections"
    )
    with contextlib.ExitStack() as stack:
        peers = Peers()
        if args.senders == "real":
            peers = Peers(
                stack.enter_context(peer_process("twilio")),
                stack.enter_context(peer_process("smtp")),
            )
        url = stack.enter_context(_database_url(args.database))
        asyncio.run(_run(args, url, peers))


if __name__ == "__main__":
    main()
