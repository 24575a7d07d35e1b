"""The batcher: one writer task that turns messages arriving together into one transaction.

Group commit: a batch is one transaction whose statements each carry every message in it
(`dialog.inbound.sql`), so eight conversations at once cost about what one does. A lone message
is a batch of one and waits for nothing. The same customer twice in a batch waits for the next
one, so each turn sees the one before. If anything in a batch fails, it is rolled back and every
message in it is run again on its own: only the one at fault fails. A provider's redelivery of
a message still queued or in flight (Twilio retries a webhook it thinks timed out) waits for the
first delivery instead of a batch of its own, and is its duplicate once that one is stored.

Batches fly in `lanes`, one transaction each. On SQLite one lane: writers take turns for the write
lock anyway (and a writer that finds it taken sleeps in SQLite's busy handler). On PostgreSQL two:
while one batch waits for the server, the other's statements run, and the server works on both.
A sender with a batch in flight waits for it; a customer writing from two addresses at once is
kept in order by PostgreSQL's row lock on their conversation (`dialog.inbound.sql`).

A bot inside the database (`Brain`) answers in the batch's transaction. A bot outside it
(`RemoteBot`) is asked after the commit, each turn in a task of its own and within a bound
(`bot_timeout`), while the writer goes on with the next batch: no customer's turn waits for
another customer's answer. Its answers come back to the writer, which writes those that are
ready in one transaction. While a customer's turn awaits the bot, their later messages are
parked, and released when its answer is written, so each of their turns still sees the one
before.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from itertools import islice

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channels.base import ChannelName, InboundMessage
from consent.replies import Brand
from crm_core.sqltypes import utcnow
from dialog.inbound import sql
from dialog.inbound.steps import TurnSteps, stops
from dialog.inbound.work import Context, Pending, Work, fingerprint
from dialog.media import bot_reads, medium
from dialog.outbox import announce
from dialog.readahead import Reader
from dialog.senders import identify
from dialog.turns import (
    Bot,
    BotTurn,
    BotUnanswered,
    Brain,
    InboundResult,
    RemoteBot,
    Turn,
    respond_all,
)

__all__ = ["BOT_TIMEOUT", "MAX_BATCH", "InboundProcessor"]

log = logging.getLogger(__name__)

SessionMaker = async_sessionmaker[AsyncSession]
MAX_BATCH = 32  # messages per transaction at most: a bound on how long one batch holds the lock
# The longest a remote bot is waited for. Rasa's own client gives up sooner (5 s) and hands the
# customer to a person; this bound is for a bot that never answers at all.
BOT_TIMEOUT = 15.0
# The fewest queued messages worth reading ahead at once (see `_read_queued`).
READ_AHEAD_MIN = 16
# The longest a turn waits for its text's reading from elsewhere (`dialog.readahead.Reader`);
# past it the bot reads the text itself. A reader keeping up answers in a few milliseconds.
READ_WAIT = 0.5

Answer = BotTurn | BaseException
Later = list[tuple[Pending, int]]  # messages for a later batch, with their customer's id


class InboundProcessor:
    """The one way in: `handle` a message, get what was stored and the replies to send."""

    def __init__(
        self,
        sessionmaker: SessionMaker,
        bot: Bot,
        *,
        default_region: str,
        default_language: str,
        default_timezone: str,
        brand: Brand,
        now: Callable[[], datetime] = utcnow,
        max_batch: int = MAX_BATCH,
        lanes: int = 1,
        read_ahead: Reader | None = None,
        bot_timeout: float = BOT_TIMEOUT,
    ) -> None:
        if isinstance(bot, RemoteBot) and isinstance(bot, Brain):
            raise TypeError("a bot answers either inside the transaction or outside it, not both")
        self._sessionmaker = sessionmaker
        self._brain: Brain | None = None if isinstance(bot, RemoteBot) else bot
        self._remote: RemoteBot | None = bot if isinstance(bot, RemoteBot) else None
        self._steps = TurnSteps(default_region, default_language, default_timezone, brand)
        self._region = default_region
        self._now = now
        self._max_batch = max_batch
        self._bot_timeout = bot_timeout
        self._queue: deque[Pending] = deque()
        self._lanes = lanes
        self._flying: set[asyncio.Task[None]] = set()  # the batches in flight, one per lane
        self._senders: set[tuple[str, str]] = set()  # their senders (identity kind, address)
        self._answering: asyncio.Task[None] | None = None  # a remote bot's answers being written
        self._read_ahead = read_ahead
        self._reading: asyncio.Task[None] | None = None
        self._unread = 0  # queued messages not read ahead: what makes a read-ahead worth it
        self._asks: set[asyncio.Task[None]] = set()
        self._answers: list[tuple[Work, Answer]] = []  # back from the remote bot, to be written
        # Customers whose turn awaits the remote bot, and their messages parked meanwhile.
        self._asking: dict[int, deque[Pending]] = {}
        # The address each of those turns came from (identity kind, address), and whose it was:
        # a merge meanwhile files that address's next message under the survivor, who then
        # waits for that turn too (`_waiting_on`: survivor -> the customer as asked).
        self._asked_from: dict[tuple[str, str], int] = {}
        self._asked_by: dict[int, tuple[str, str]] = {}
        self._waiting_on: dict[int, int] = {}
        # Messages queued or in flight by their provider id (channel, id), for redeliveries.
        self._handling: dict[tuple[ChannelName, str], Pending] = {}

    async def handle(self, message: InboundMessage) -> InboundResult:
        """Store, answer and commit one message; its replies are for the channel to send.

        A message of any length is stored whole; the bot reads its start (`dialog.media`).
        Raises ValueError (InvalidIdentity among them) for a message no channel should pass on.
        """
        on = medium(message.channel)
        if not on.writes:
            raise ValueError(f"customers do not write to us by {on.name}")
        key = (message.channel, message.provider_id)
        original = self._handling.get(key)
        # One settled already (its caller not yet resumed) is stored: the database dedupes.
        if original is not None and not original.result.done():
            # The provider sent it again (Twilio does when our answer is slow) while the first
            # delivery is still queued or in flight: the first one's outcome is this one's.
            again: asyncio.Future[InboundResult | None] = asyncio.get_running_loop().create_future()
            original.redelivered.append(again)
            first = await again
            if first is not None and fingerprint(original.message) == fingerprint(message):
                # A duplicate, with the first delivery's answer: a web chat visitor who
                # reconnected meanwhile gets it on the socket they are on now.
                return replace(first, duplicate=True)
            # The first delivery failed, or this is another message under its id (which the
            # one in flight may itself be: the database holds the first one sent under it):
            # tried on its own, as any redelivery is.
        # An SMS sender no customer writes from (a short code) is kept as written, unanswered.
        message, sender = identify(on, message, self._region)
        pending = Pending(
            message,
            on,
            sender,
            message.received_at or self._now(),
            asyncio.get_running_loop().create_future(),
        )
        if self._handling.setdefault(key, pending) is pending:
            pending.result.add_done_callback(lambda _: self._forget(key, pending))
        self._queue.append(pending)
        self._unread += 1
        self._kick()
        # Shielded: a caller that stops waiting (a web chat socket closed) leaves its message in
        # flight and known as such, so a redelivery meanwhile waits for it and gets its answer.
        return await asyncio.shield(pending.result)

    def _forget(self, key: tuple[ChannelName, str], pending: Pending) -> None:
        """The message is settled: a redelivery from now on is the database's to dedupe."""
        if self._handling.get(key) is pending:
            del self._handling[key]

    async def drained(self) -> None:
        """Wait until every message handed in so far is written and answered (at shutdown)."""
        while running := [
            t
            for t in (self._answering, self._reading, *self._flying, *self._asks)
            if t and not t.done()
        ]:
            await asyncio.wait(running)

    def _kick(self) -> None:
        """Start what may start now. A remote bot's answers first, alone: they release their
        customers' parked messages. Then batches, up to `lanes` at once: a lone message starts
        one at once; another lane opens only for a crowd (a whole batch waiting), so a burst is
        not cut into batches of one while the first lane commits."""
        if self._answering is not None and not self._answering.done():
            return
        if self._answers:
            if not self._flying:
                answers, self._answers = self._answers, []
                self._answering = asyncio.create_task(
                    self._answer(answers), name="sastre-inbound-answers"
                )
            return
        while len(self._flying) < self._lanes and self._queue:
            if self._flying and len(self._queue) < self._max_batch:
                return
            batch = self._take()
            if not batch:
                return  # every waiting message's sender has a batch in flight
            task = asyncio.create_task(self._fly(batch), name="sastre-inbound-batch")
            self._flying.add(task)
        if (
            self._read_ahead is not None
            and self._flying
            and self._unread >= READ_AHEAD_MIN
            and (self._reading is None or self._reading.done())
        ):
            self._reading = asyncio.create_task(self._read_queued(), name="sastre-read-ahead")

    async def _read_queued(self) -> None:
        """While a batch waits on the database, the bot reads the messages queued behind it
        (`dialog.readahead`) in the moments the event loop would be idle: many at once or none,
        since for a few texts the arithmetic's fixed cost is most of it."""
        unread = list(islice((p for p in self._queue if not p.read_ahead), 2 * self._max_batch))
        if len(unread) < READ_AHEAD_MIN or not self._flying:
            return
        self._unread -= len(unread)
        self._hand_in(unread)

    def _hand_in(self, unread: list[Pending]) -> None:
        """Hand texts to the reader; what it reads elsewhere is awaited before their turn."""
        assert self._read_ahead is not None
        texts: list[str] = []
        for pending in unread:
            pending.read_ahead = True
            text = bot_reads(pending.message)
            if text.strip():
                texts.append(text)
        reading = self._read_ahead.read(texts)
        if reading is not None:
            for pending in unread:
                pending.reading = reading

    def _take(self) -> list[Pending]:
        """The next batch, in arrival order: up to `max_batch` messages whose sender has none in
        flight (each turn sees the one before; see `_batch` for one customer's two senders)."""
        batch: list[Pending] = []
        skipped: list[Pending] = []
        while self._queue and len(batch) < self._max_batch:
            pending = self._queue.popleft()
            flying = (pending.kind.value, pending.sender) in self._senders
            (skipped if flying else batch).append(pending)
        self._queue.extendleft(reversed(skipped))
        unread = [pending for pending in batch if not pending.read_ahead]
        self._unread -= len(unread)  # its batch reads it now: no longer one to read ahead
        if unread and self._read_ahead is not None and self._read_ahead.elsewhere:
            # Read elsewhere while the batch's statements run; it awaits this before the turn.
            self._hand_in(unread)
        else:
            for pending in unread:
                pending.read_ahead = True
        return batch

    async def _fly(self, batch: list[Pending]) -> None:
        senders = {(pending.kind.value, pending.sender) for pending in batch}
        self._senders |= senders
        try:
            later = await self._run(batch)
        except BaseException as stopped:  # cancelled at shutdown: nobody is left waiting forever
            self._abandon(stopped)
            raise
        finally:
            self._senders -= senders
            self._flying.discard(asyncio.current_task())
        self._queue.extendleft(reversed(self._park(later)))
        self._kick()

    async def _answer(self, answers: list[tuple[Work, Answer]]) -> None:
        try:
            await self._write_answers(answers)
        except BaseException as stopped:
            self._abandon(stopped)
            raise
        finally:
            self._answering = None  # done: the kick below may start what waited for it
        self._kick()

    def _park(self, later: Later) -> list[Pending]:
        """Messages of a customer awaiting the bot wait for its answer; the others, for the next
        batch."""
        requeued: list[Pending] = []
        for pending, customer_id in later:
            parked = self._asking.get(customer_id)
            (requeued if parked is None else parked).append(pending)
        return requeued

    def _release(self, customer_id: int) -> None:
        """The customer's answer is written: their parked messages go first in the queue."""
        self._queue.extendleft(reversed(self._asking.pop(customer_id, deque())))
        sender = self._asked_by.pop(customer_id, None)
        if sender is not None and self._asked_from.get(sender) == customer_id:
            del self._asked_from[sender]
        for survivor in [s for s, asked in self._waiting_on.items() if asked == customer_id]:
            del self._waiting_on[survivor]

    def _waits_for(self, pending: Pending, customer_id: int) -> int | None:
        """Whose turn with the remote bot this message waits for, if any: its customer's, or
        the one asked from its address (the customer merged into another meanwhile: from then
        on all the survivor's messages wait for it, whatever their address). A STOP waits for
        nobody (the answer is then not sent: the worker checks consent)."""
        if not self._asking:  # no turn awaits the bot (an embedded bot's never do)
            return None
        if stops(pending.message):
            return None
        if customer_id in self._asking:
            return customer_id
        asked = self._waiting_on.get(customer_id)
        if asked is None:
            asked = self._asked_from.get((pending.kind.value, pending.sender))
        if asked not in self._asking:
            return None
        self._waiting_on[customer_id] = asked
        return asked

    def _abandon(self, stopped: BaseException) -> None:
        for pending in self._queue:
            pending.settle(stopped)
        self._queue.clear()
        self._unread = 0
        for work, _ in self._answers:
            work.pending.settle(stopped)
            for pending in self._asking.pop(work.customer.id, deque()):
                pending.settle(stopped)
        self._answers.clear()

    async def _run(self, batch: list[Pending]) -> Later:
        """Handle a batch in one transaction; a bot outside the database is asked after it.
        Returns the messages that wait for a later batch."""
        try:
            async with self._sessionmaker.begin() as session:
                done, later, asking = await self._batch(session, batch)
        except Exception as error:
            if len(batch) == 1:
                batch[0].settle(error)
                return []
            later = []
            for pending in batch:
                later.extend(await self._run([pending]))
            return later
        except BaseException as stopped:
            for pending in batch:
                pending.settle(stopped)
            raise
        if any(work.sent for work in done):
            announce()  # committed: the workers may send the replies now
        for work in done:
            work.pending.settle(work.result())
        for work, turn in asking:
            self._ask(work, turn)
        return later

    async def _batch(
        self, session: AsyncSession, batch: list[Pending]
    ) -> tuple[list[Work], Later, list[tuple[Work, Turn]]]:
        """Every message of the batch: stored, and answered unless the bot is outside the
        database. Returns the works done, the messages for a later batch, and the turns for
        a bot outside the database (their messages stored, each awaiting it in a row)."""
        contexts = await sql.load_contexts(session, batch)
        first = [p for p in batch if (p.kind.value, p.sender) not in contexts]
        if first:
            contexts.update(await self._steps.create_leads(session, first))
        turns: list[tuple[Pending, Context]] = []
        later: Later = []
        customers: set[int] = set()
        for pending in batch:
            context = contexts.get((pending.kind.value, pending.sender))
            if context is None:  # a merged record's address, or another process's new lead
                context = await self._steps.resolve(session, pending)
            customer_id = context.customer.id
            # Their earlier turn first, so this one sees it.
            waits = self._waits_for(pending, customer_id)
            if waits is not None:
                later.append((pending, waits))
                continue
            if customer_id in customers:
                later.append((pending, customer_id))
                continue
            customers.add(customer_id)
            turns.append((pending, context))
        works = [
            Work(
                pending,
                context.customer,
                # none open: the one it opens, stored with its message (`TurnSteps.store`)
                context.conversation or self._steps.opening(context, pending.message),
                context.revoked,
                opened=context.conversation is None,
            )
            for pending, context in turns
        ]
        await sql.link_replies(session, works)
        await self._steps.store(session, works)
        await sql.check_duplicates(session, works, asked_before=self._asked_long_ago())
        await sql.drop_empty_openings(session, works)
        answered = [work for work in works if work.inbound_id is not None]
        asking: list[tuple[Work, Turn]] = []
        for work in answered:
            turn = await self._steps.prepare(session, work)
            if turn is not None:
                asking.append((work, turn))
        if self._brain is not None:
            await _read(work.pending for work, _ in asking)
            # Every turn of the batch is another customer's: the bot reads them all at once.
            decided = await respond_all(self._brain, session, [turn for _, turn in asking])
            for (work, _), answer in zip(asking, decided, strict=True):
                await self._steps.apply(session, work, answer)
            await sql.write(session, answered)
            await sql.answered(session, [work for work in answered if work.resumed])
            return works, later, []
        await sql.write(session, answered)
        waiting = {id(work) for work, _ in asking}
        await sql.await_bot(session, [work for work, _ in asking if not work.resumed])
        # A message asked again that needs no bot now (a STOP came meanwhile) is done with.
        await sql.answered(session, [w for w in answered if w.resumed and id(w) not in waiting])
        return [work for work in works if id(work) not in waiting], later, asking

    def _ask(self, work: Work, turn: Turn) -> None:
        """Put a turn to the bot outside the database in a task of its own."""
        self._asking.setdefault(work.customer.id, deque())
        sender = (work.pending.kind.value, work.pending.sender)
        self._asked_from[sender] = work.customer.id
        self._asked_by[work.customer.id] = sender
        task = asyncio.create_task(self._put(work, turn), name=f"sastre-bot-{work.inbound_id}")
        self._asks.add(task)
        task.add_done_callback(self._asks.discard)

    async def _put(self, work: Work, turn: Turn) -> None:
        """Ask with no transaction open (on SQLite the write lock stays free: Rasa's actions may
        write), and hand the answer to the writer. A turn the bot fails on, or does not answer
        in time, keeps awaiting it: its caller gets the error, a redelivery asks again."""
        assert self._remote is not None
        answer: Answer
        try:
            async with asyncio.timeout(self._bot_timeout):
                answer = await self._remote.ask(turn)
        except TimeoutError:
            answer = BotUnanswered(
                f"the bot did not answer within {self._bot_timeout:g} s; "
                "the message is stored and a redelivery asks again"
            )
        except asyncio.CancelledError as stopped:  # at shutdown: nobody is left waiting
            work.pending.settle(stopped)
            for pending in self._asking.pop(work.customer.id, deque()):
                pending.settle(stopped)
            raise
        except Exception as error:
            answer = error
        self._answers.append((work, answer))
        self._kick()

    async def _write_answers(self, answers: list[tuple[Work, Answer]]) -> None:
        # Their parked messages were parked under the customer as it was when asked; writing
        # the answer may find a survivor of a merge instead.
        asked = [work.customer.id for work, _ in answers]
        decided: list[tuple[Work, BotTurn]] = []
        failed: list[tuple[Work, BaseException]] = []
        for work, answer in answers:
            if isinstance(answer, BotTurn):
                decided.append((work, answer))
            else:
                failed.append((work, answer))
        try:
            if failed:
                await self._give_up([work for work, _ in failed])
            for work, error in failed:
                work.pending.settle(error)
            if decided:
                await self._commit_answers(decided)
        finally:
            for customer_id in asked:
                self._release(customer_id)

    def _asked_long_ago(self) -> datetime:
        """A wait for a remote bot begun before this (`bot_timeout` ago) is nobody's now."""
        return self._now() - timedelta(seconds=self._bot_timeout)

    async def _give_up(self, works: list[Work]) -> None:
        """Asks that failed may be taken over at once (`sql.give_up_asking`): the caller's
        redelivery, or the re-ask sweeper. Before the caller hears of the failure, so that its
        redelivery finds the wait free. If this fails, the wait frees itself after
        `bot_timeout`."""
        try:
            async with self._sessionmaker.begin() as session:
                await sql.give_up_asking(session, works, self._asked_long_ago())
        except Exception:
            log.exception("could not give up the bot's wait for %d messages", len(works))

    async def _commit_answers(self, decided: list[tuple[Work, BotTurn]]) -> None:
        """The bot's answers and their effects, in one transaction, applied to the
        conversations as they are now (locked on PostgreSQL), after a merge to the survivor's;
        if it fails, each again on its own, so only the one at fault fails."""
        try:
            async with self._sessionmaker.begin() as session:
                ids = [work.conversation.id for work, _ in decided]
                held = await sql.lock_conversations(session, ids)
                for work, answer in decided:
                    # The customer may have been merged meanwhile: the answer goes to the open
                    # conversation of the record that lives on. A person holding it by now: the
                    # bot's answer is not sent.
                    if await self._steps.catch_up(session, work, held.get(work.conversation.id)):
                        await self._steps.apply(session, work, answer)
                works = [work for work, _ in decided]
                await sql.write(session, works)
                await sql.answered(session, works)
        except Exception as error:
            if len(decided) == 1:
                decided[0][0].pending.settle(error)
                return
            for work, answer in decided:
                work.forget_answer()
                await self._commit_answers([(work, answer)])
            return
        except BaseException as stopped:
            for work, _ in decided:
                work.pending.settle(stopped)
            raise
        if any(work.sent for work, _ in decided):
            announce()
        for work, _ in decided:
            work.pending.settle(work.result())


async def _read(pendings: Iterable[Pending]) -> None:
    """Wait for the readings of these messages done elsewhere, if any is still out."""
    out = {p.reading for p in pendings if p.reading is not None and not p.reading.done()}
    if out:
        await asyncio.wait(out, timeout=READ_WAIT)
