"""Benchmark: signed Twilio SMS webhooks per second through the whole service, beside a ceiling.

    .venv/bin/python -m bench.sms_inbound [--messages 3000] [--concurrency 64]
                                          [--db sqlite,postgresql] [--postgres-url URL]

A separate load process posts signed `POST /webhooks/twilio/sms` forms, as Twilio does, over
`--concurrency` connections at once, to the real service (create_app, its own process): the
signature checked, the message deduped by MessageSid, the customer resolved (demo customers,
and some numbers never seen), keywords, the embedded bot's self-service answer, all stored and
the reply queued in the outbox, committed before the 200. One message in twenty is a redelivery
of an earlier MessageSid (Twilio retrying), which must be stored once.

In the same run the load process posts the same forms to a bare aiohttp handler that only
checks the signature and returns constant TwiML: the most the HTTP layer and the signature
allow on this machine (the ceiling). Printed: throughput and p50/p99 latency for both, their
ratio, the answers by status, the CPU each message cost the server (all its threads, and its
event loop's alone: the one that saturates), the load process, the bot's reading child and,
on this machine, PostgreSQL; and the stored messages counted afterwards (every 200 must be
stored). The load process writes requests signed and encoded beforehand and reads only the
status and the body's length: on two cores, CPU the load spends is CPU the server does not
get (a full HTTP client cost 0.2 ms a request, this one 0.03 ms). Wall-clock figures need a
quiet machine; CPU per message holds on a busy one. On PostgreSQL the statistics are brought
up to date after the warm-up, as autovacuum keeps them on a live database (`_statistics_current`).
Targets (issue #10): >= 1,500 messages/s and p99 <= 50 ms, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import re
import socket
import tempfile
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import func, select, text
from yarl import URL

from channels.sms_webhooks import EMPTY_TWIML, SIGNATURE_HEADER, WebhookSignature
from crm_core.models import Identity, IdentityKind
from dialog.models import Message
from sastre.app import create_app
from sastre.config import load_settings
from sastre.db import database, migrate
from sastre.demo import load_demo_data
from sastre.web.server import SastreRunner
from sastre.web.twilio import INBOUND_PATH

PUBLIC = "https://sastre.example.com"
TOKEN = "bench-twilio-auth-token-0123456789"
ACCOUNT = "AC" + "0" * 32
QUESTIONS = [
    "¿Cuál es el horario de la tienda?",
    "what time do you open on saturday?",
    "¿Cuánto cuesta el envío?",
    "how much is shipping to the US?",
    "can I return a jacket I bought online?",
    "hola",
    "thanks!",
    "do you do alterations?",
    "where is my order SO-482913?",
    "¿dónde está mi pedido SO-175520?",
]
WARM_UP = 200


def _forms(phones: Sequence[str], count: int, first: int) -> list[dict[str, str]]:
    """Twilio's inbound form for `count` messages; one in twenty repeats an earlier MessageSid."""
    chooser = random.Random(first)
    forms: list[dict[str, str]] = []
    for n in range(count):
        if n > 20 and n % 20 == 0:
            forms.append(forms[chooser.randrange(n - 20, n)])  # a redelivery
            continue
        sid = f"SM{first + n:032x}"
        # One sender in ten is a number never seen: a first message creates the customer.
        sender = phones[n % len(phones)] if n % 10 else f"+1415555{(first + n) % 10_000:04d}"
        forms.append(
            {
                "AccountSid": ACCOUNT,
                "ApiVersion": "2010-04-01",
                "Body": QUESTIONS[n % len(QUESTIONS)],
                "From": sender,
                "MessageSid": sid,
                "NumMedia": "0",
                "NumSegments": "1",
                "SmsMessageSid": sid,
                "SmsSid": sid,
                "SmsStatus": "received",
                "To": "+14155550100",
            }
        )
    return forms


# --- the load process ---------------------------------------------------------------------------


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection: *close", re.IGNORECASE)
Result = tuple[float, list[float], dict[int, int], set[str], float]
"""Elapsed seconds, latencies, answers by status, the MessageSids answered 200, and the CPU
seconds the load process spent."""


def _requests(host: str, forms: list[dict[str, str]]) -> list[tuple[str, bytes]]:
    """Each form as the bytes of Twilio's signed POST, made before the clock starts (signing
    is Twilio's work, not ours), with its MessageSid."""
    signer = WebhookSignature(TOKEN, PUBLIC)
    made: list[tuple[str, bytes]] = []
    for form in forms:
        body = urlencode(form).encode()
        head = (
            f"POST {INBOUND_PATH} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"{SIGNATURE_HEADER}: {signer.sign(INBOUND_PATH, form)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        made.append((form["MessageSid"], head.encode() + body))
    return made


async def _post_all(base: str, forms: list[dict[str, str]], concurrency: int) -> Result:
    """`concurrency` keep-alive connections, each posting the next request once answered.

    A client that only writes prepared bytes and reads the status line and the body's length:
    on two cores every cycle the load spends is one the server does not get, and a full HTTP
    client costs several times this per request."""
    url = URL(base)
    assert url.host is not None
    assert url.port is not None
    requests = _requests(f"{url.host}:{url.port}", forms)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stored: set[str] = set()
    next_one = iter(requests)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            for sid, request in next_one:
                t0 = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = _CONTENT_LENGTH.search(head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                latencies.append(time.perf_counter() - t0)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    stored.add(sid)
                if _CLOSE.search(head):  # the server ends this connection: open another
                    writer.close()
                    reader, writer = await asyncio.open_connection(url.host, url.port)
        finally:
            writer.close()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return elapsed, latencies, statuses, stored, cpu


def _load(base: str, forms: list[dict[str, str]], concurrency: int, pipe: Connection) -> None:
    pipe.send(asyncio.run(_post_all(base, forms, concurrency)))
    pipe.close()


def _load_in_a_process(base: str, forms: list[dict[str, str]], concurrency: int) -> Result:
    """Run the load in its own process (spawned: nothing of this one's loop is shared)."""
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(target=_load, args=(base, forms, concurrency, sending))
    process.start()
    sending.close()
    result: Result = receiving.recv()
    process.join()
    return result


class ServerCpu(NamedTuple):
    """CPU seconds spent while the load ran: the server's process (the database driver's
    thread included), its event loop's thread alone (the one that saturates), and what shares
    the machine with it (`Neighbours`)."""

    process: float
    loop: float
    neighbours: Neighbours | None


class Neighbours(NamedTuple):
    """CPU seconds of what the server shares the cores with, read from /proc (Linux): its
    children that outlive the load (the embedded bot's reading child; the load process is
    joined by then and counted apart) and every PostgreSQL process on the machine. With
    PostgreSQL on the same two cores, all of them together, not the event loop alone, are
    what runs out."""

    children: float
    postgres: float


def _neighbours() -> Neighbours | None:
    proc = Path("/proc")
    if not (proc / "stat").exists():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    me = str(os.getpid())
    children = postgres = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        name, _, rest = stat[stat.index("(") + 1 :].rpartition(")")
        fields = rest.split()  # state, ppid, ... utime and stime the 12th and 13th
        used = int(fields[11]) + int(fields[12])
        if fields[1] == me:
            children += used
        elif name == "postgres":
            postgres += used
    return Neighbours(children / tick, postgres / tick)


async def _load_while_serving(
    base: str, forms: list[dict[str, str]], concurrency: int
) -> tuple[Result, ServerCpu]:
    # The server runs in this process's loop; the load process is waited for off the loop.
    loop = time.pthread_getcpuclockid(threading.get_ident())
    cpu, loop_cpu, around = time.process_time(), time.clock_gettime(loop), _neighbours()
    result = await asyncio.to_thread(_load_in_a_process, base, forms, concurrency)
    after = _neighbours()
    spent = None
    if around is not None and after is not None:
        spent = Neighbours(*(b - a for a, b in zip(around, after, strict=True)))
    return result, ServerCpu(time.process_time() - cpu, time.clock_gettime(loop) - loop_cpu, spent)


# --- the servers --------------------------------------------------------------------------------


def _bound() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def _serving(app: web.Application) -> tuple[SastreRunner, str]:
    runner = SastreRunner(app, access_log=None)
    await runner.setup()
    sock = _bound()
    site = web.SockSite(runner, sock, backlog=1024)
    await site.start()
    return runner, f"http://127.0.0.1:{sock.getsockname()[1]}"


def _ceiling_app() -> web.Application:
    """Only what no webhook can skip: read the form, check the signature, answer."""
    signer = WebhookSignature(TOKEN, PUBLIC)

    async def handler(request: web.Request) -> web.Response:
        form = await request.post()
        params = {name: str(value) for name, value in form.items()}
        if not signer.valid(request.path_qs, params, request.headers.get(SIGNATURE_HEADER)):
            return web.Response(status=403)
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    app = web.Application()
    app.router.add_post(INBOUND_PATH, handler)
    return app


# --- one database -------------------------------------------------------------------------------


def _figures(elapsed: float, latencies: list[float], count: int) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    p50 = ordered[len(ordered) // 2] * 1000
    p99 = ordered[max(int(len(ordered) * 0.99) - 1, 0)] * 1000
    return count / elapsed, p50, p99


def _cpu(server: ServerCpu, load: float, count: int) -> str:
    def ms(seconds: float) -> str:
        return f"{seconds / count * 1000:.2f} ms"

    said = f"server {ms(server.process)} (event loop {ms(server.loop)}), load {ms(load)}"
    spent = server.neighbours
    if spent is not None and spent.children:
        said += f", the bot's reading child {ms(spent.children)}"
    if spent is not None and spent.postgres:
        said += f", PostgreSQL {ms(spent.postgres)}"
    return said


async def _statistics_current(url: str) -> None:
    """ANALYZE after the warm-up on PostgreSQL, as autovacuum does on a live database within a
    minute of its tables growing. The run is seconds old: without it, the plans the server
    cached on the warm-up's nearly empty tables (a sequential scan is cheapest there) stay for
    the whole run, and the batch's update of its messages by `id = ANY(...)` reads the whole,
    growing table (1-2 ms a batch by the end, measured with auto_explain), which no database
    with a history does. SQLite's planner keeps no statistics unless asked to, and needs none."""
    if not url.startswith("postgresql"):
        return
    async with database(url) as (engine, _), engine.connect() as connection:
        await connection.execute(text("ANALYZE"))
        await connection.commit()


async def _run(name: str, url: str, messages: int, concurrency: int, customers: int) -> None:
    await migrate(url)
    settings = load_settings(
        _env_file=None,
        database_url=url,
        secret_key="bench-secret-0123456789",
        public_url=PUBLIC,
        twilio_account_sid=ACCOUNT,
        twilio_auth_token=TOKEN,
        twilio_from="+14155550100",
    )
    async with database(url) as (_, sessionmaker):
        async with sessionmaker.begin() as session:
            await load_demo_data(session, customers=customers)
        async with sessionmaker() as session:
            phones = list(
                await session.scalars(
                    select(Identity.value).where(Identity.kind == IdentityKind.PHONE.value)
                )
            )
    warm_up = _forms(phones, WARM_UP, 10_000_000)
    forms = _forms(phones, messages, 20_000_000)

    ceiling_runner, ceiling_base = await _serving(_ceiling_app())
    try:
        await _load_while_serving(ceiling_base, warm_up, concurrency)
        ceiling, ceiling_cpu = await _load_while_serving(ceiling_base, forms, concurrency)
    finally:
        await ceiling_runner.cleanup()

    runner, base = await _serving(create_app(settings))
    try:
        await _load_while_serving(base, warm_up, concurrency)
        await _statistics_current(url)
        full, full_cpu = await _load_while_serving(base, forms, concurrency)
    finally:
        await runner.cleanup()  # the inbound path drains before the database closes

    async with database(url) as (_, sessionmaker), sessionmaker() as session:
        sids = sorted(full[3])
        found = 0
        for start in range(0, len(sids), 500):
            found += int(
                await session.scalar(
                    select(func.count())
                    .select_from(Message)
                    .where(
                        Message.direction == "in",
                        Message.channel == "sms",
                        Message.provider_id.in_(sids[start : start + 500]),
                    )
                )
                or 0
            )
        replies = int(
            await session.scalar(
                select(func.count()).select_from(Message).where(Message.direction == "out")
            )
            or 0
        )

    rate, p50, p99 = _figures(full[0], full[1], messages)
    top, top50, top99 = _figures(ceiling[0], ceiling[1], messages)
    unique = len({form["MessageSid"] for form in forms})
    print(
        f"--- {name}: {messages:,} webhooks ({unique:,} distinct MessageSids), "
        f"{concurrency} connections"
    )
    print(
        f"ceiling (signature + constant TwiML): {top:,.0f} msg/s, p50 {top50:.1f} ms, "
        f"p99 {top99:.1f} ms; answers {ceiling[2]}; "
        f"CPU/msg: {_cpu(ceiling_cpu, ceiling[4], messages)}"
    )
    print(
        f"whole path:                           {rate:,.0f} msg/s, p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms; answers {full[2]}; "
        f"CPU/msg: {_cpu(full_cpu, full[4], messages)}"
    )
    print(
        f"ratio whole/ceiling: {rate / top:.0%}   "
        f"target >= 1,500 msg/s: {'PASS' if rate >= 1500 else 'MISS'}, "
        f"p99 <= 50 ms: {'PASS' if p99 <= 50 else 'MISS'}"
    )
    print(
        f"stored: {found:,} of {len(full[3]):,} MessageSids answered 200 "
        f"({'every 200 stored' if found == len(full[3]) else 'MISSING MESSAGES'}); "
        f"{replies:,} replies queued in all (warm-up included)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sms_inbound", description=__doc__)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--db", default="sqlite,postgresql", help="comma-separated databases")
    parser.add_argument("--postgres-url", help="postgresql+asyncpg URL of an EMPTY database")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.db.split(",") if n.strip()]
    for name in names:
        if name not in ("sqlite", "postgresql"):
            parser.error(f"unknown database {name!r}: use sqlite and/or postgresql")
    print(f"machine: {os.cpu_count()} CPUs")
    with contextlib.ExitStack() as stack:
        for name in names:
            if name == "sqlite":
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sastre-sms-")))
                url = f"sqlite+aiosqlite:///{tmp / 'sms.db'}"
            elif args.postgres_url:
                url = args.postgres_url
            else:
                from tests.support.servers import postgres_server

                url = stack.enter_context(postgres_server())
            asyncio.run(_run(name, url, args.messages, args.concurrency, args.customers))


if __name__ == "__main__":
    main()
