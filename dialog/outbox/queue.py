"""The outbox's statements: queueing rows with their messages, the workers' claims and results,
and the providers' delivery reports.

A claim is one transaction: the due rows, oldest first (`FOR UPDATE SKIP LOCKED` on PostgreSQL,
so workers never wait on each other nor take the same row; SQLite's `BEGIN IMMEDIATE` serialises
the claims), consent read again for them, and the rows marked `sending` under the worker's lease
before any provider is called. So after a crash, a `sending` row whose lease ran out is one whose
call may have happened: it is sent again (the honest at-least-once), and recorded as
`interrupted` by the claim that takes it out of the dead worker's hands.

A row the rate limit holds back is not touched: it keeps its `due_at`, its place in line, and the
claims leave its channel out until the limit has room (`_full`), so a channel's messages leave in
the order they became due.

A result settles only the claim that made it (the worker, and the lease that claim set): one that
comes after its lease ran out and another claim took the row over is recorded, as every call is,
and moves nothing, except a `sent` (see `_moves`).

A provider's report can outrun the worker: Twilio may call back before the worker has committed
`sent` with the provider id. A report for an id not saved yet is parked (`delivery_reports`)
and applied, in order and forward only, by the transaction that saves the id; one never matched
is dropped after a day (`PARKED_FOR`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import ChannelName
from consent.models import consent_events_table, consent_state_table
from consent.types import GENERAL, Action, ConsentStatus
from crm_core.models import InteractionKind
from crm_core.sqltypes import UTCDateTime, utcnow
from crm_core.timeline import add_interactions
from crm_core.unnest import as_arrays, insert_unnested, unnested
from dialog.media import medium
from dialog.models import messages_table
from dialog.outbox.models import (
    PENDING_ONLY,
    Purpose,
    delivery_attempts_table,
    outbox_table,
    parked_reports_table,
)
from dialog.outbox.states import PENDING, DeliveryState, advance

__all__ = [
    "PARKED_FOR",
    "ROW_COLUMNS",
    "Admit",
    "Claimed",
    "Result",
    "Wait",
    "announce",
    "claim",
    "depth",
    "enqueue",
    "listen",
    "next_due",
    "outbox_row",
    "record_delivery",
    "release",
    "settle",
    "through_outbox",
]

log = logging.getLogger(__name__)

# --- wake-ups -----------------------------------------------------------------------------------

_wakers: list[Callable[[], None]] = []


def listen(waker: Callable[[], None]) -> Callable[[], None]:
    """Call `waker` whenever rows were committed to the outbox; returns the undo."""
    _wakers.append(waker)
    return lambda: _wakers.remove(waker)


def announce() -> None:
    """Rows were committed: wake whoever sends them (call after the commit, never before)."""
    for waker in list(_wakers):
        try:
            waker()
        except Exception:  # a waker is a hint; the poll still finds the rows
            log.exception("an outbox waker failed")


# --- queueing -----------------------------------------------------------------------------------


def through_outbox(channel: ChannelName | str) -> bool:
    """Every medium but a live socket is sent by the workers; the web chat answers on the
    visitor's open socket at once."""
    return ChannelName(channel) is not ChannelName.WEBCHAT


def outbox_row(
    message_id: int | None,
    channel: str,
    now: datetime,
    *,
    purpose: str = Purpose.SERVICE,
    due_at: datetime | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A row to `enqueue` for the message. Its id may be None for a statement that writes the
    message itself and fills it in (`dialog.inbound.one_write`)."""
    return {
        "message_id": message_id,
        "channel": channel,
        "purpose": purpose,
        "state": DeliveryState.QUEUED.value,
        "due_at": due_at or now,
        "attempts": 0,
        "claimed_by": None,
        "provider_id": None,
        "error_code": None,
        "error": None,
        "options": options or {},
        "created_at": now,
        "updated_at": now,
    }


_ENQUEUE = insert(outbox_table)
ROW_COLUMNS = tuple(outbox_row(0, "", datetime.min).keys())  # every column a row sets
_ENQUEUE_UNNESTED = insert_unnested(outbox_table, ROW_COLUMNS)


async def enqueue(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """One INSERT for all of them (`outbox_row`s), in the caller's transaction."""
    if len(rows) > 1 and unnested(session):
        await session.execute(_ENQUEUE_UNNESTED, as_arrays(outbox_table, rows, ROW_COLUMNS))
    elif rows:
        await session.execute(_ENQUEUE, list(rows) if len(rows) > 1 else rows[0])


# --- claims -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """A row a worker holds, with what it needs to send it."""

    message_id: int
    customer_id: int
    channel: ChannelName
    address: str
    text: str
    purpose: str
    options: dict[str, Any]
    attempts: int  # calls made for it, this one included
    interrupted: bool  # a dead worker's call was in flight: this is a re-send
    # When this claim's lease runs out. With the worker's name, it tells this claim from every
    # other claim of the row: the row is claimed again only once this lease has run out, so
    # any later claim sets a later one (`attempts` would not do: staff retrying a failed
    # message start it again at 0).
    lease_until: datetime | None = None
    queued_at: datetime | None = None  # when the row was queued (None: not known, not checked)


@dataclass(slots=True)
class Result:
    """What one call came to."""

    claimed: Claimed
    outcome: str  # sent, retry, failed
    provider_id: str | None = None
    code: str | None = None
    reason: str | None = None
    retry_at: datetime | None = None  # for a retry


_o, _m = outbox_table.c, messages_table.c
_COLUMNS = (
    _o.message_id,
    _o.state,
    _o.claimed_by,
    _o.purpose,
    _o.options,
    _o.attempts,
    _o.channel,
    _m.address,
    _m.text,
    _m.customer_id,
    _o.created_at,
)


# The pending rows, written out as the partial index `ix_outbox_due` is (not as bound
# parameters, which no planner can match to an index's predicate), so the claim and `next_due`
# walk that index in due order and stop at the limit, however many rows the table holds.
_PENDING_ROW = text(f"outbox.{PENDING_ONLY}")
# SQLite keeps no statistics unless told to: left to itself it took ix_outbox_provider
# (channel = ?) and read every row of the channel at each claim, so an idle worker's wake-up
# grew with the table (45 ms at 300,000 rows). There the index is named (SQLAlchemy renders no
# table hint for SQLite, hence the text).
_SQLITE_DUE = (
    text(
        "SELECT outbox.message_id, outbox.state, outbox.claimed_by, outbox.purpose, "
        "outbox.options, outbox.attempts, outbox.channel, messages.address, messages.text, "
        "messages.customer_id, outbox.created_at FROM outbox INDEXED BY ix_outbox_due "
        "JOIN messages ON messages.id = outbox.message_id "
        f"WHERE outbox.{PENDING_ONLY} AND outbox.due_at <= :now "
        "AND outbox.channel IN :channels ORDER BY outbox.due_at LIMIT :limit"
    )
    .bindparams(bindparam("now", type_=UTCDateTime()), bindparam("channels", expanding=True))
    .columns(*_COLUMNS)
)
_SQLITE_NEXT_DUE = (
    text(
        "SELECT min(outbox.due_at) AS due_at FROM outbox INDEXED BY ix_outbox_due "
        f"WHERE outbox.{PENDING_ONLY} AND outbox.channel IN :channels"
    )
    .bindparams(bindparam("channels", expanding=True))
    .columns(_o.due_at)
)


def _due(dialect: str) -> Any:
    if dialect == "sqlite":
        return _SQLITE_DUE
    return (
        select(*_COLUMNS)
        .join(messages_table, _m.id == _o.message_id)
        .where(
            _PENDING_ROW,
            _o.due_at <= bindparam("now"),
            _o.channel.in_(bindparam("channels", expanding=True)),
        )
        .order_by(_o.due_at)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True, of=outbox_table)
    )


_DUE = {name: _due(name) for name in ("sqlite", "postgresql")}
# One statement for the whole claim (the values are the same for every row).
_START = (
    update(outbox_table)
    .where(_o.message_id.in_(bindparam("ids", expanding=True)))
    .values(
        state=DeliveryState.SENDING.value,
        attempts=_o.attempts + 1,
        claimed_by=bindparam("worker"),
        due_at=bindparam("lease_until"),
        updated_at=bindparam("now"),
    )
)
# A row nobody holds is `queued` (with the time it is due), whatever it went through before:
# `sending` means a worker holds it and a call may be in flight (see states.py). For the rows a
# stopping worker gives back (`release`).
_HOLD = (
    update(outbox_table)
    .where(_o.message_id == bindparam("id"), text(PENDING_ONLY))
    .values(state=DeliveryState.QUEUED.value, due_at=bindparam("at"), claimed_by=None)
)
_cs, _ce = consent_state_table.c, consent_events_table.c
# The consents of the claimed rows' customers on their channels, as they are.
_CONSENTS = select(_cs.customer_id, _cs.channel, _cs.purpose, _cs.topic, _cs.status).where(
    tuple_(_cs.customer_id, _cs.channel).in_(bindparam("keys", expanding=True))
)
# Their latest revocations since the oldest claimed row was queued: a row queued before a STOP
# is not sent after it, even once a START has come since (the customer asked again since). By
# when each was recorded, as the rows' `created_at` is: when written, by the same clock.
_REVOKED_SINCE = (
    select(
        _ce.customer_id,
        _ce.channel,
        _ce.purpose,
        _ce.topic,
        func.max(_ce.recorded_at).label("at"),
    )
    .where(
        _ce.action == Action.REVOKE.value,
        _ce.recorded_at > bindparam("since", type_=UTCDateTime()),
        tuple_(_ce.customer_id, _ce.channel).in_(bindparam("keys", expanding=True)),
    )
    .group_by(_ce.customer_id, _ce.channel, _ce.purpose, _ce.topic)
)


# Well under SQLite's limit of bound parameters in one statement.
_IDS_PER_STATEMENT = 1_000

# Which of these rows may go now (None), and which not before when: the rate limits.
Admit = Callable[[Sequence["Claimed"]], Awaitable[list[tuple["Claimed", datetime | None]]]]
# Which of these rows must wait for the recipient's contact hours, by message id: until when
# (None: never). The quiet hours, asked again at the send (sastre.worker.quiet_hours).
Wait = Callable[
    [AsyncSession, Sequence["Claimed"], datetime], Awaitable[Mapping[int, datetime | None]]
]

# --- the rate limits' holds ----------------------------------------------------------------------

# Until when each channel's rate limit has no room, by database, as the claims of this process
# last heard it from their `admit`. A row the limit holds back is left as it is: its `due_at` is
# its place in line (moved to when the window has room, it went behind every row queued
# meanwhile, for good at a steady arrival rate). Until then the claims leave the channel out
# (its rows would fill each claim only to be held again, ahead of the other channels' rows) and
# so does `next_due` (its rows are due all along: an idle worker would look every few
# milliseconds). The price: meanwhile, a claim on the other channels walks past that channel's
# due rows in `ix_outbox_due` (which has no channel), a read bounded by its backlog, where moving
# them rewrote the whole backlog at each opening of the window. Kept for the process rather
# than by each worker: a process's workers share the limits (sastre.worker.rates), and
# `next_due` has no worker to ask. Only a hint: a channel is left out until a time its limiter
# gave, and the claims ask the limiter before any send.
_full: dict[str, dict[str, datetime]] = {}

# On PostgreSQL, claims under rate limits take turns (SQLite's are serial already): two at once
# would lock different rows of a channel (SKIP LOCKED), and whichever asked the limiter first
# would send its later row before the other's earlier one, at every opening of the window.
# They are short, and the rates, not the claims, bound what such workers send.
_RATED_CLAIMS = text(
    "SELECT pg_advisory_xact_lock(hashtextextended('sastre:outbox:rated-claims', 0))"
)


def _database(session: AsyncSession) -> str:
    return str(session.get_bind().engine.url)


def _closed(session: AsyncSession, now: datetime) -> dict[str, datetime]:
    """The channels whose rate limit has no room at `now`: until when."""
    full = _full.get(_database(session), {})
    return {channel: until for channel, until in full.items() if until > now}


def _close(session: AsyncSession, until: dict[str, datetime], now: datetime) -> None:
    full = _full.setdefault(_database(session), {})
    for channel in [c for c, t in full.items() if t <= now]:
        del full[channel]
    full.update(until)


def _claimed(row: Any, lease_until: datetime) -> Claimed:
    return Claimed(
        message_id=row.message_id,
        customer_id=row.customer_id,
        channel=ChannelName(row.channel),
        address=row.address,
        text=row.text,
        purpose=row.purpose,
        options=row.options or {},
        attempts=row.attempts + 1,
        interrupted=row.state == DeliveryState.SENDING.value and row.claimed_by is not None,
        lease_until=lease_until,
        queued_at=row.created_at,
    )


def _consent_channel(channel: ChannelName) -> str:
    return medium(channel).consent.value


async def claim(
    session: AsyncSession,
    *,
    worker: str,
    channels: Sequence[ChannelName],
    limit: int,
    lease: timedelta,
    now: datetime | None = None,
    admit: Admit | None = None,
    wait: Wait | None = None,
) -> list[Claimed]:
    """Take up to `limit` due rows on `channels` (those it can send) for `worker` and mark
    them `sending` under a lease; return those to send now.

    In the same transaction, rows consent no longer allows (`_consented`: revoked since they
    were queued, or marketing without granted consent) are failed, not sent (a keyword's own
    answer, the STOP confirmation, is sent all the same); `wait` (the quiet hours) may queue
    rows again for when they may go, or fail those that never may (`quiet_hours`); `admit`
    (the rate limits) may hold rows back: they are left as they are, and their channel out of
    the claims until the limit has room."""
    now = now or utcnow()
    if admit is not None:
        closed = _closed(session, now)
        channels = [c for c in channels if c.value not in closed]
        if not channels:
            return []  # nothing may go yet: not even a transaction
    dialect = session.get_bind().dialect.name
    if admit is not None and dialect == "postgresql":
        await session.execute(_RATED_CLAIMS)
    params = {"now": now, "limit": limit, "channels": [c.value for c in channels]}
    rows = (await session.execute(_DUE[dialect], params)).all()
    if not rows:
        return []
    lease_until = now + lease
    refused, sending = await _consented(session, [_claimed(row, lease_until) for row in rows])
    later: list[Claimed] = []
    if wait is not None and sending:
        sending, later, never = await _timed(session, wait, sending, now)
        refused += never
    if admit is not None and sending:
        sending = await _admitted(session, admit, sending, now)
    for start in range(0, len(sending), _IDS_PER_STATEMENT):
        ids = [c.message_id for c in sending[start : start + _IDS_PER_STATEMENT]]
        await session.execute(
            _START, {"ids": ids, "worker": worker, "lease_until": lease_until, "now": now}
        )
    # Every row taken from a dead worker's hands, to send or to refuse: its call is recorded
    # now, once. A row held back stays in those hands until a claim takes it (and should that
    # worker only have been slow, its result still settles the row: no call counted twice).
    taken = [*sending, *later, *(r.claimed for r in refused)]
    await _record_interrupted(session, [c for c in taken if c.interrupted], worker, now)
    if refused:  # this claim holds them: they move whoever claimed them before
        await _record(session, refused, [True] * len(refused), worker=worker, now=now)
    return sending


async def _consented(
    session: AsyncSession, picked: list[Claimed]
) -> tuple[list[Result], list[Claimed]]:
    """The rows consent no longer allows (as failed results), and the others. A row for service
    goes unless its customer revoked service on its channel; a marketing row only while its
    customer's marketing consent there is granted (confirmed, not pending), as the contact policy
    asked when it was queued. Neither goes if its customer revoked either since it was queued,
    whatever they said after. A keyword's own answer (the STOP confirmation) goes regardless."""
    checked = [c for c in picked if c.purpose != Purpose.COMPLIANCE]
    if not checked:
        return [], picked
    keys = list({(c.customer_id, _consent_channel(c.channel)) for c in checked})
    found = await session.execute(_CONSENTS, {"keys": keys})
    status = {(r.customer_id, r.channel, r.purpose, r.topic): r.status for r in found}
    queued = [c.queued_at for c in checked if c.queued_at is not None]
    revoked_at: dict[Consent, datetime] = {}
    if queued:
        since = min(queued)
        found = await session.execute(_REVOKED_SINCE, {"keys": keys, "since": since})
        revoked_at = {(r.customer_id, r.channel, r.purpose, r.topic): r.at for r in found}
    refused: list[Result] = []
    sending: list[Claimed] = []
    for c in picked:
        why = None if c.purpose == Purpose.COMPLIANCE else _refusal(c, status, revoked_at)
        if why is None:
            sending.append(c)
        else:
            refused.append(Result(c, "failed", code=why[0], reason=why[1]))
    return refused, sending


Consent = tuple[int, str, str, str]  # customer, channel, purpose, topic
_CONSENT_CODES = ("revoked", "not_consented")  # what `_refusal` answers


def _refusal(
    c: Claimed, status: Mapping[Consent, str], revoked_at: Mapping[Consent, datetime]
) -> tuple[str, str] | None:
    """Why consent keeps this row from going (code, reason), or None. A marketing row's consent
    is its topic's (`options["topic"]`), else the general one, as the contact policy reads it."""
    channel = _consent_channel(c.channel)
    topic = str(c.options.get("topic") or GENERAL)
    consents = [(c.customer_id, channel, Purpose.SERVICE, GENERAL)]
    if c.purpose == Purpose.MARKETING:
        general = (c.customer_id, channel, Purpose.MARKETING, GENERAL)
        own = (c.customer_id, channel, Purpose.MARKETING, topic)
        consents += [general, own] if topic != GENERAL else [general]
    if status.get(consents[0]) == ConsentStatus.REVOKED:
        return "revoked", "revoked"
    if c.purpose == Purpose.MARKETING:  # the most specific consent there is
        applies = status.get(consents[-1]) or status.get(consents[1])
        if applies == ConsentStatus.REVOKED:
            return "revoked", "revoked"
        if applies != ConsentStatus.GRANTED:
            return "not_consented", f"marketing consent is {applies or 'not given'}, not granted"
    if c.queued_at is not None:
        queued_at = c.queued_at
        if any((revoked_at.get(consent) or queued_at) > queued_at for consent in consents):
            return "revoked", "revoked after it was queued"
    return None


async def _timed(
    session: AsyncSession, wait: Wait, rows: list[Claimed], now: datetime
) -> tuple[list[Claimed], list[Claimed], list[Result]]:
    """The rows that may go now; those queued again, due when they may (`_HOLD`: nobody holds
    them); and those that never may, as failed results."""
    waiting = await wait(session, rows, now)
    if not waiting:
        return rows, [], []
    may: list[Claimed] = []
    later: list[Claimed] = []
    held: list[dict[str, Any]] = []
    never: list[Result] = []
    for c in rows:
        if c.message_id not in waiting:
            may.append(c)
        elif (opening := waiting[c.message_id]) is None:
            never.append(Result(c, "failed", code="quiet_hours", reason=_NEVER_OPENS))
        else:
            later.append(c)
            held.append({"id": c.message_id, "at": opening})
    if held:
        await session.execute(_HOLD, held)
    return may, later, never


_NEVER_OPENS = "the customer's contact window never meets the contact hours where they are"


async def _admitted(
    session: AsyncSession, admit: Admit, rows: list[Claimed], now: datetime
) -> list[Claimed]:
    """The rows the rate limits let go now. The others are left as they are, in their place
    in line; their channels are left out of the claims until the limit has room."""
    admitted: list[Claimed] = []
    full: dict[str, datetime] = {}
    for c, later in await admit(rows):
        if later is None:
            admitted.append(c)
        else:
            channel = c.channel.value
            full[channel] = min(later, full.get(channel, later))
    if full:
        _close(session, full, now)
    return admitted


async def _record_interrupted(
    session: AsyncSession, rows: Sequence[Claimed], worker: str, now: datetime
) -> None:
    if rows:
        await session.execute(
            insert(delivery_attempts_table),
            [
                {
                    "message_id": c.message_id,
                    "worker": worker,
                    "outcome": "interrupted",
                    "code": None,
                    "reason": "the worker holding it stopped while its call was in flight",
                    "provider_id": None,
                    "at": now,
                }
                for c in rows
            ],
        )


async def release(session: AsyncSession, ids: Sequence[int], at: datetime) -> None:
    """Give rows back unsent (a worker stopping): due again at `at`."""
    if ids:
        await session.execute(_HOLD, [{"id": id_, "at": at} for id_ in ids])


# Literal, not expanding: these statements run once per batch with many rows (executemany).
_STILL_PENDING = text(PENDING_ONLY)

# --- results ------------------------------------------------------------------------------------

_SENT = (
    update(outbox_table)
    .where(_o.message_id == bindparam("id"), _STILL_PENDING)
    .values(
        state=DeliveryState.SENT.value,
        provider_id=bindparam("pid"),
        claimed_by=None,
        error_code=None,
        error=None,
        updated_at=bindparam("now"),
    )
)
# On PostgreSQL, one statement for the whole batch rather than one execution per row: the
# ids and provider ids as two arrays, joined back row by row.
_SENT_PG = text(
    "UPDATE outbox SET state = :sent, provider_id = v.pid, claimed_by = NULL, "
    "error_code = NULL, error = NULL, updated_at = :now "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:pids AS text[])) AS v(id, pid) "
    f"WHERE outbox.message_id = v.id AND outbox.{PENDING_ONLY}"
)
_ATTEMPT_COLUMNS = ("message_id", "worker", "outcome", "code", "reason", "provider_id", "at")
_ATTEMPTS = insert(delivery_attempts_table)
_ATTEMPTS_UNNESTED = insert_unnested(delivery_attempts_table, _ATTEMPT_COLUMNS)
_RETRY = (
    update(outbox_table)
    .where(_o.message_id == bindparam("id"), _STILL_PENDING)
    .values(
        state=DeliveryState.QUEUED.value,  # waiting for its next attempt, held by nobody
        due_at=bindparam("at"),
        claimed_by=None,
        error_code=bindparam("code"),
        error=bindparam("reason"),
        updated_at=bindparam("now"),
    )
)
_FAILED = (
    update(outbox_table)
    .where(_o.message_id == bindparam("id"), _STILL_PENDING)
    .values(
        state=DeliveryState.FAILED.value,
        claimed_by=None,
        error_code=bindparam("code"),
        error=bindparam("reason"),
        updated_at=bindparam("now"),
    )
)


def _timeline(
    customer_id: int,
    message_id: int,
    channel: str,
    state: str,
    now: datetime,
    *,
    code: str | None = None,
    reason: str | None = None,
    actor: str = "system",
) -> dict[str, Any]:
    summary = state if reason is None else f"{state}: {reason}"
    data: dict[str, Any] = {"message_id": message_id, "state": state}
    if code is not None:
        data["code"] = code
    return {
        "customer_id": customer_id,
        "kind": InteractionKind.DELIVERY.value,
        "channel": channel,
        "summary": summary,
        "actor": actor,
        "data": data,
        "occurred_at": now,
    }


# Each row of a batch as it stands, in one statement; on PostgreSQL locked until the commit, in
# id order (two settling workers, one of them late, may share rows), so that what `_moves`
# decides from it stays true until the statements below apply it.
_ROWS = (
    select(_o.message_id, _o.state, _o.claimed_by, _o.due_at)
    .where(_o.message_id.in_(bindparam("ids", expanding=True)))
    .order_by(_o.message_id)
)
_LOCKED_ROWS = _ROWS.with_for_update()
_PENDING_STATES = frozenset(s.value for s in PENDING)
_AFTER = {
    "sent": DeliveryState.SENT.value,
    "retry": DeliveryState.QUEUED.value,
    "failed": DeliveryState.FAILED.value,
}
# Said on the attempt of a result that moved nothing.
_STALE = (
    "recorded only: its claim no longer held the message (taken over once its lease ran out, "
    "or sent by another call)"
)


async def _rows(session: AsyncSession, ids: Sequence[int]) -> dict[int, Any]:
    query = _LOCKED_ROWS if session.get_bind().dialect.name == "postgresql" else _ROWS
    ordered = sorted(set(ids))
    found: dict[int, Any] = {}
    for start in range(0, len(ordered), _IDS_PER_STATEMENT):
        chunk = ordered[start : start + _IDS_PER_STATEMENT]
        for row in await session.execute(query, {"ids": chunk}):
            found[row.message_id] = row
    return found


def _moves(results: Sequence[Result], rows: dict[int, Any], worker: str) -> list[bool]:
    """Which results move their row. A `retry` or a `failed` only while the claim that made
    the call still holds the row: `sending` under this worker and that claim's lease. One whose
    lease ran out before it came, and whose row another claim took over (another worker's, or
    this worker's again), would otherwise give back or end a row whose new call is in flight
    (and a third worker would send it while the second's call is out).

    A `sent` moves any row still pending, whoever holds it: the provider has the message, so
    it is sent, and its provider id is what the delivery reports will name. Left to the claim
    that took it over, a `retry` from that one would queue it a third time, and a `failed`
    would say it never went. The call that claim made cannot be called back (at-least-once); its
    result finds the row sent and moves nothing. A row already sent or failed stays so."""
    states = {id_: (row.state, row.claimed_by, row.due_at) for id_, row in rows.items()}
    moves: list[bool] = []
    for result in results:
        id_ = result.claimed.message_id
        state, claimed_by, due_at = states.get(id_, (None, None, None))
        if result.outcome == "sent":
            moved = state in _PENDING_STATES
        else:
            moved = (
                state == DeliveryState.SENDING.value
                and claimed_by == worker
                and due_at == result.claimed.lease_until
            )
        if moved:  # two results for one row in a batch: the second sees what the first did
            states[id_] = (_AFTER[result.outcome], None, due_at)
        moves.append(moved)
    return moves


async def settle(
    session: AsyncSession, results: Sequence[Result], *, worker: str, now: datetime | None = None
) -> None:
    """The batch's outcomes, each applied only by the claim that made it (`_moves`); every
    attempt recorded, and the state changes (`sent`, `failed`) on the customers' timelines."""
    if not results:
        return
    rows = await _rows(session, [r.claimed.message_id for r in results])
    moves = _moves(results, rows, worker)
    await _record(session, results, moves, worker=worker, now=now or utcnow())


async def _record(
    session: AsyncSession,
    results: Sequence[Result],
    moves: Sequence[bool],
    *,
    worker: str,
    now: datetime,
) -> None:
    """A statement per kind for the results that move their row; every attempt recorded (one
    that moved nothing says so), and the rows moved to `sent` or `failed` on the timelines."""
    by: dict[str, list[Result]] = {"sent": [], "retry": [], "failed": []}
    for result, moved in zip(results, moves, strict=True):
        if moved:
            by[result.outcome].append(result)
    if by["sent"] and session.get_bind().dialect.name == "postgresql":
        await session.execute(
            _SENT_PG,
            {
                "sent": DeliveryState.SENT.value,
                "ids": [r.claimed.message_id for r in by["sent"]],
                "pids": [r.provider_id for r in by["sent"]],
                "now": now,
            },
        )
    elif by["sent"]:
        await session.execute(
            _SENT,
            [{"id": r.claimed.message_id, "pid": r.provider_id, "now": now} for r in by["sent"]],
        )
    if by["retry"]:
        await session.execute(
            _RETRY,
            [
                {
                    "id": r.claimed.message_id,
                    "at": r.retry_at or now,
                    "code": r.code,
                    "reason": r.reason,
                    "now": now,
                }
                for r in by["retry"]
            ],
        )
    if by["failed"]:
        await session.execute(
            _FAILED,
            [
                {"id": r.claimed.message_id, "code": r.code, "reason": r.reason, "now": now}
                for r in by["failed"]
            ],
        )
    await _record_attempts(session, results, moves, worker=worker, now=now)
    ended = [r for r, m in zip(results, moves, strict=True) if m and r.outcome != "retry"]
    await _record_timeline(session, ended, now)
    # Reports that outran this commit (a status callback before the id was saved) go after
    # the `sent` entry, in the order the provider sent them.
    saved = [(r.claimed.channel.value, r.provider_id) for r in by["sent"] if r.provider_id]
    if saved:
        await _apply_parked(session, saved, now)


async def _record_attempts(
    session: AsyncSession,
    results: Sequence[Result],
    moves: Sequence[bool],
    *,
    worker: str,
    now: datetime,
) -> None:
    # Refused at the claim (consent revoked, or marketing's no longer granted): `revoked`.
    outcomes = ["revoked" if r.code in _CONSENT_CODES else r.outcome for r in results]
    reasons = [
        r.reason if moved else _STALE if r.reason is None else f"{r.reason} ({_STALE})"
        for r, moved in zip(results, moves, strict=True)
    ]
    attempts = [
        {
            "message_id": r.claimed.message_id,
            "worker": worker,
            "outcome": outcome,
            "code": r.code,
            "reason": reason,
            "provider_id": r.provider_id,
            "at": now,
        }
        for r, outcome, reason in zip(results, outcomes, reasons, strict=True)
    ]
    if len(attempts) > 1 and unnested(session):
        arrays = as_arrays(delivery_attempts_table, attempts, _ATTEMPT_COLUMNS)
        await session.execute(_ATTEMPTS_UNNESTED, arrays)
    else:
        await session.execute(_ATTEMPTS, attempts if len(attempts) > 1 else attempts[0])


_OWNERS = select(_m.id, _m.customer_id).where(_m.id.in_(bindparam("ids", expanding=True)))


async def _record_timeline(session: AsyncSession, results: Sequence[Result], now: datetime) -> None:
    """On the timeline of whoever the message belongs to now: the customer it was claimed for
    may have been merged into another meanwhile (the merge moved the message and its history
    to the record that lives on)."""
    if not results:
        return
    ids = sorted({r.claimed.message_id for r in results})
    owners = {row.id: row.customer_id for row in await session.execute(_OWNERS, {"ids": ids})}
    timeline = [
        _timeline(
            owners.get(r.claimed.message_id, r.claimed.customer_id),
            r.claimed.message_id,
            r.claimed.channel.value,
            DeliveryState.SENT.value if r.outcome == "sent" else DeliveryState.FAILED.value,
            now,
            code=r.code,
            reason=r.reason,
        )
        for r in results
    ]
    await add_interactions(session, timeline)


# --- the providers' reports ---------------------------------------------------------------------

# How long a report for a provider id we do not know is kept: the worker saves the id within
# seconds of the call; a report still unmatched after a day is about a message not ours.
PARKED_FOR = timedelta(days=1)
_r = parked_reports_table.c
_PARK = insert(parked_reports_table)
_LOCK_ONE = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
_LOCK_MANY = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(CAST(:keys AS text[])) AS k"
)


def _report_key(channel: str, provider_id: str) -> str:
    return f"{channel}:{provider_id}"


async def _lock_reports(session: AsyncSession, keys: Sequence[tuple[str, str]]) -> None:
    """On PostgreSQL, a report and the worker saving its provider id take the same lock, so
    one always sees the other's commit: without it, a report could look for the id just before
    the worker commits it, while the worker looked for parked reports just before the report's
    commit, and the report would be parked for nothing. SQLite's writers are serial already."""
    if session.get_bind().dialect.name != "postgresql" or not keys:
        return
    if len(keys) == 1:
        await session.execute(_LOCK_ONE, {"key": _report_key(*keys[0])})
    else:
        await session.execute(_LOCK_MANY, {"keys": sorted(_report_key(*k) for k in keys)})


async def _advance_row(
    session: AsyncSession,
    row: Any,
    new: DeliveryState,
    now: datetime,
    *,
    code: str | None,
    reason: str | None,
) -> DeliveryState | None:
    """Move one outbox row (message_id, state, channel, customer_id) to `new` if that is
    forward; the state stored afterwards, or None when nothing changed."""
    moved = advance(DeliveryState(row.state), new)
    if moved is None:
        return None
    values: dict[str, Any] = {"state": moved.value, "updated_at": now, "claimed_by": None}
    if code is not None or reason is not None:
        values.update(error_code=code, error=reason)
    await session.execute(
        update(outbox_table)
        .where(and_(_o.message_id == row.message_id, _o.state == row.state))
        .values(values)
    )
    await add_interactions(
        session,
        [
            _timeline(
                row.customer_id,
                row.message_id,
                row.channel,
                moved.value,
                now,
                code=code,
                reason=reason,
                actor="provider",
            )
        ],
    )
    return moved


def _by_provider_id(session: AsyncSession) -> Any:
    query = select(_o.message_id, _o.state, _o.channel, _o.provider_id, _m.customer_id).join(
        messages_table, _m.id == _o.message_id
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=outbox_table)
    return query


async def record_delivery(
    session: AsyncSession,
    *,
    channel: ChannelName | str,
    provider_id: str,
    state: DeliveryState | str,
    code: str | None = None,
    reason: str | None = None,
    at: datetime | None = None,
) -> bool:
    """A provider reported a message's state (a status callback, a bounce). Stored only when
    it moves the message forward; returns whether it did. One that would move it backwards
    (callbacks arrive out of order) changes nothing. One for a provider id not saved yet (the
    callback outran the worker's commit) is parked, and applied when the worker saves the id.
    Consent and undeliverable addresses are the caller's to record (consent's own functions)."""
    now = at or utcnow()
    new = DeliveryState(state)
    name = ChannelName(channel).value
    await _lock_reports(session, [(name, provider_id)])
    query = _by_provider_id(session).where(_o.channel == name, _o.provider_id == provider_id)
    row = (await session.execute(query)).first()
    if row is None:
        await _park(session, name, provider_id, new, code, reason, now)
        return False
    return await _advance_row(session, row, new, now, code=code, reason=reason) is not None


async def _park(
    session: AsyncSession,
    channel: str,
    provider_id: str,
    state: DeliveryState,
    code: str | None,
    reason: str | None,
    at: datetime,
) -> None:
    received = utcnow()
    await session.execute(
        delete(parked_reports_table).where(_r.received_at < received - PARKED_FOR)
    )
    await session.execute(
        _PARK,
        {
            "channel": channel,
            "provider_id": provider_id,
            "state": state.value,
            "code": code,
            "reason": reason,
            "at": at,
            "received_at": received,
        },
    )


async def _apply_parked(
    session: AsyncSession, keys: Sequence[tuple[str, str]], now: datetime
) -> int:
    """The worker just saved these (channel, provider id)s: apply the reports that came
    first, in the order they arrived, each only if it moves the message forward; returns how
    many were applied. They are removed either way."""
    await _lock_reports(session, keys)
    parked = (
        await session.execute(
            select(parked_reports_table)
            .where(tuple_(_r.channel, _r.provider_id).in_(bindparam("keys", expanding=True)))
            .order_by(_r.id),
            {"keys": list(keys)},
        )
    ).all()
    if not parked:
        return 0
    wanted = {(p.channel, p.provider_id) for p in parked}
    query = _by_provider_id(session).where(
        tuple_(_o.channel, _o.provider_id).in_(bindparam("keys", expanding=True))
    )
    rows = {
        (r.channel, r.provider_id): SimpleNamespace(**r._mapping)
        for r in (await session.execute(query, {"keys": list(wanted)})).all()
    }
    applied = 0
    for report in parked:
        row = rows.get((report.channel, report.provider_id))
        if row is None:  # its message was not saved as sent after all: leave it to expire
            continue
        # Dated now, not when the provider said it: after the `sent` entry on the timeline.
        moved = await _advance_row(
            session, row, DeliveryState(report.state), now, code=report.code, reason=report.reason
        )
        if moved is not None:
            row.state = moved.value
            applied += 1
    done = [p.id for p in parked if (p.channel, p.provider_id) in rows]
    await session.execute(delete(parked_reports_table).where(_r.id.in_(done)))
    return applied


async def next_due(session: AsyncSession, channels: Sequence[ChannelName]) -> datetime | None:
    """When a worker on these channels has something to do: the soonest pending row on a
    channel whose rate limit has room, or when a full one has room again (its rows are due all
    along, `_full`). A read: no lock taken."""
    closed = _closed(session, utcnow())
    names = [c.value for c in channels if c.value not in closed]
    soonest = [closed[c.value] for c in channels if c.value in closed]
    due = await _soonest_due(session, names) if names else None
    return min([*soonest, due] if due is not None else soonest, default=None)


async def _soonest_due(session: AsyncSession, channels: list[str]) -> datetime | None:
    if session.get_bind().dialect.name == "sqlite":
        query: Any = _SQLITE_NEXT_DUE.bindparams(channels=channels)
    else:
        query = select(func.min(_o.due_at)).where(_PENDING_ROW, _o.channel.in_(channels))
    due: datetime | None = await session.scalar(query)
    return due


async def depth(session: AsyncSession) -> tuple[int, datetime | None]:
    """How many rows are pending, and when the oldest was queued."""
    row = (
        await session.execute(
            select(func.count(), func.min(_o.created_at)).where(
                _o.state.in_([s.value for s in PENDING])
            )
        )
    ).one()
    return int(row[0]), row[1]
