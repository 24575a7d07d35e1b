"""The consent ledger: append-only events, and the current state derived from them.

The rules, applied in the order events were recorded:

* **grant** — marketing by e-mail or SMS needs double opt-in, so a grant there leaves the consent
  `pending` until a **confirm** (reply YES, or the link in a message that carries no advertising).
  Everywhere else a grant is `granted` at once. Granting what is already granted changes nothing.
* **confirm** — turns a `pending` consent into `granted`. Confirming what is not pending is
  refused (`NothingToConfirm`) and never recorded.
* **revoke** — `revoked`, at once. A revocation without a topic covers every topic of that channel
  and purpose ("stop all marketing e-mail" also stops "offers").
* For a topic, the most specific row speaks: a customer may revoke "offers" and keep "new-products".

`transition` is that rule as a pure function; `record_consent` is the only way an event is written
(event and state in one transaction); `replay` rebuilds the state from the events, and a test
proves it always equals the stored state of a live record (a record merged away keeps its events
and has no state: `merge_consents`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from consent.evidence import redact_evidence
from consent.models import ConsentEvent, ConsentState
from consent.types import GENERAL, Action, Channel, ConsentStatus, Purpose, Source
from crm_core.customers import get_customer
from crm_core.sqltypes import utcnow

__all__ = [
    "DOUBLE_OPT_IN",
    "InvalidTopic",
    "NothingToConfirm",
    "StateKey",
    "consent_history",
    "consent_status",
    "current_consents",
    "event_view",
    "hold_consent",
    "merge_consents",
    "record_consent",
    "replay",
    "transition",
]

# (channel, purpose) pairs where a grant waits for a confirmation.
DOUBLE_OPT_IN = frozenset({(Channel.EMAIL, Purpose.MARKETING), (Channel.SMS, Purpose.MARKETING)})
MAX_TOPIC = 64

StateKey = tuple[str, str, str]  # (channel, purpose, topic)


class NothingToConfirm(ValueError):
    pass


class InvalidTopic(ValueError):
    """A consent topic that is not a short name of letters, digits, '-' or '_'."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"topic: {reason}")
        self.field = "topic"
        self.reason = reason


class EventLike(Protocol):
    """What `transition` needs of an event; ConsentEvent rows and EventFacts both provide it."""

    @property
    def id(self) -> int: ...
    @property
    def channel(self) -> str: ...
    @property
    def purpose(self) -> str: ...
    @property
    def topic(self) -> str: ...
    @property
    def action(self) -> str: ...


@dataclass(frozen=True, slots=True)
class EventFacts:
    """An event not (yet) stored: the one `record_consent` is about to write."""

    id: int
    channel: str
    purpose: str
    topic: str
    action: str


def transition(
    states: Mapping[StateKey, ConsentStatus], event: EventLike
) -> dict[StateKey, ConsentStatus]:
    """The rows an event changes, with their new status. Pure; raises NothingToConfirm."""
    key = (event.channel, event.purpose, event.topic)
    current = states.get(key)
    match Action(event.action):
        case Action.REVOKE:
            changed = {key: ConsentStatus.REVOKED}
            if event.topic == GENERAL:
                for other in states:
                    if other[:2] == key[:2]:
                        changed[other] = ConsentStatus.REVOKED
            return {k: v for k, v in changed.items() if states.get(k) != v}
        case Action.CONFIRM:
            if current is not ConsentStatus.PENDING:
                raise NothingToConfirm(
                    f"no pending {event.purpose} consent on {event.channel}"
                    + (f" for {event.topic}" if event.topic else "")
                    + " to confirm"
                )
            return {key: ConsentStatus.GRANTED}
        case Action.GRANT:
            if current is ConsentStatus.GRANTED:
                return {}
            needs_confirmation = (Channel(event.channel), Purpose(event.purpose)) in DOUBLE_OPT_IN
            new = ConsentStatus.PENDING if needs_confirmation else ConsentStatus.GRANTED
            return {} if current is new else {key: new}
    raise AssertionError(f"unknown action {event.action}")  # pragma: no cover


def replay(events: Iterable[EventLike]) -> dict[StateKey, tuple[ConsentStatus, int]]:
    """The state of one customer rebuilt from their events, in recorded order."""
    statuses: dict[StateKey, ConsentStatus] = {}
    behind: dict[StateKey, int] = {}
    for event in events:
        try:
            changed = transition(statuses, event)
        except NothingToConfirm:
            continue  # never recorded by record_consent; tolerated in hand-made histories
        for key, status in changed.items():
            statuses[key] = status
            behind[key] = event.id
    return {key: (statuses[key], behind[key]) for key in statuses}


_HOLD = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


async def hold_consent(session: AsyncSession, customer_id: int) -> None:
    """This customer's consent changes take turns until the transaction ends.

    Their state rows are locked as they are read (`_states`), but a row not written yet locks
    nothing: two first changes at once (a STOP and the carrier's 21610 for it, two 21610s for a
    reply sent in two parts) both found none, both inserted it, and the second failed on the
    key. On PostgreSQL an advisory lock per customer, taken by every change (`record_consent`)
    and by whoever decides on the state before changing it; SQLite's `BEGIN IMMEDIATE` already
    serialises writers."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(_HOLD, {"key": f"consent:{customer_id}"})


async def _states(session: AsyncSession, customer_id: int) -> dict[StateKey, ConsentState]:
    rows = await session.scalars(
        select(ConsentState).where(ConsentState.customer_id == customer_id).with_for_update()
    )
    return {(r.channel, r.purpose, r.topic): r for r in rows}


def _check_topic(topic: str) -> str:
    topic = topic.strip().lower()
    if len(topic) > MAX_TOPIC or any(not (ch.isalnum() or ch in "-_") for ch in topic):
        raise InvalidTopic(f"must be up to {MAX_TOPIC} letters, digits, '-' or '_'")
    return topic


async def record_consent(
    session: AsyncSession,
    customer_id: int,
    channel: Channel,
    purpose: Purpose,
    action: Action,
    source: Source,
    *,
    actor: str,
    evidence: Mapping[str, Any] | None = None,
    topic: str = GENERAL,
    occurred_at: datetime | None = None,
) -> ConsentEvent:
    """Append one event and apply it to the state, in the caller's transaction.

    The only way consent changes. Raises NothingToConfirm (nothing written) for a confirm that
    has nothing pending, ValueError for a malformed topic, CustomerNotFound for no customer.
    """
    customer = await get_customer(session, customer_id)
    topic = _check_topic(topic)
    await hold_consent(session, customer.id)
    states = await _states(session, customer.id)
    now = utcnow()
    event = ConsentEvent(
        customer_id=customer.id,
        channel=channel.value,
        purpose=purpose.value,
        topic=topic,
        action=action.value,
        source=source.value,
        evidence=dict(evidence or {}),
        actor=actor,
        occurred_at=occurred_at or now,
        recorded_at=now,
    )
    changed = transition(
        {key: ConsentStatus(row.status) for key, row in states.items()},
        EventFacts(0, event.channel, event.purpose, event.topic, event.action),
    )
    session.add(event)
    await session.flush()
    for key, status in changed.items():
        row = states.get(key)
        if row is None:
            channel_name, purpose_name, topic_name = key
            session.add(
                ConsentState(
                    customer_id=customer.id,
                    channel=channel_name,
                    purpose=purpose_name,
                    topic=topic_name,
                    status=status.value,
                    event_id=event.id,
                    updated_at=now,
                )
            )
        else:
            row.status, row.event_id, row.updated_at = status.value, event.id, now
    await session.flush()
    return event


async def current_consents(
    session: AsyncSession, customer_id: int
) -> list[tuple[ConsentState, ConsentEvent]]:
    """Every state row of the customer with the event that set it."""
    rows = await session.execute(
        select(ConsentState, ConsentEvent)
        .join(ConsentEvent, ConsentEvent.id == ConsentState.event_id)
        .where(ConsentState.customer_id == customer_id)
        .order_by(ConsentState.channel, ConsentState.purpose, ConsentState.topic)
    )
    return [(state, event) for state, event in rows]


async def consent_history(session: AsyncSession, customer_id: int) -> list[ConsentEvent]:
    """The customer's ledger, oldest first (the order it is replayed in)."""
    return list(
        await session.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.customer_id == customer_id)
            .order_by(ConsentEvent.id)
        )
    )


async def consent_status(
    session: AsyncSession,
    customer_id: int,
    channel: Channel,
    purpose: Purpose,
    topic: str = GENERAL,
) -> ConsentStatus | None:
    """The status of one consent of the live customer (a merged id speaks for its survivor),
    read under the same lock `record_consent` takes, so a decision on it holds until commit."""
    customer = await get_customer(session, customer_id)
    row = (await _states(session, customer.id)).get((channel.value, purpose.value, topic))
    return None if row is None else ConsentStatus(row.status)


def event_view(event: ConsentEvent, *, full_evidence: bool = True) -> dict[str, Any]:
    """The event, JSON-ready; without `full_evidence`, only the evidence every reader may see
    (`consent.evidence`), and `evidence_redacted` says so."""
    return {
        "id": event.id,
        "channel": event.channel,
        "purpose": event.purpose,
        "topic": event.topic or None,
        "action": event.action,
        "source": event.source,
        "evidence": event.evidence if full_evidence else redact_evidence(event.evidence),
        "evidence_redacted": not full_evidence,
        "actor": event.actor,
        "occurred_at": event.occurred_at.isoformat(),
        "recorded_at": event.recorded_at.isoformat(),
    }


# --- merging two customers ----------------------------------------------------------------------

_RESTRICTIVENESS = {ConsentStatus.GRANTED: 0, ConsentStatus.PENDING: 1, ConsentStatus.REVOKED: 2}


async def merge_consents(
    session: AsyncSession, survivor_id: int, merged_id: int, actor: str
) -> list[ConsentEvent]:
    """After `merged_id` was merged into `survivor_id`: the most restrictive state wins.

    A revocation on either record revokes on the survivor; a consent only the merged record
    held carries over (a record with no statement about a channel restricts nothing). Every
    change is a new event on the survivor with source `merge`, citing the event it came from;
    the merged record's own ledger stays where it is, untouched: it is the history, and an access
    request reads it. Its derived state rows are deleted: a tombstone has no consent of its own
    any more (a look-up by its id reads the survivor's), and a row left `pending` or `granted`
    there would count the person twice in an audience query over `consent_state`.
    """
    mine = {key: row for key, (row, _) in _by_key(await current_consents(session, survivor_id))}
    theirs = _by_key(await current_consents(session, merged_id))
    recorded: list[ConsentEvent] = []
    for key, (row, origin) in theirs:
        status = ConsentStatus(row.status)
        own = mine.get(key)
        if (
            own is not None
            and _RESTRICTIVENESS[ConsentStatus(own.status)] >= _RESTRICTIVENESS[status]
        ):
            continue
        if own is not None and status is ConsentStatus.PENDING:
            continue  # the survivor's confirmed grant is the same person's stronger statement
        evidence = {"merged_customer_id": merged_id, "from_event_id": origin.id}
        channel, purpose, topic = Channel(key[0]), Purpose(key[1]), key[2]
        actions = {
            ConsentStatus.REVOKED: [Action.REVOKE],
            ConsentStatus.PENDING: [Action.GRANT],
            ConsentStatus.GRANTED: [Action.GRANT, Action.CONFIRM],
        }[status]
        for action in actions:
            if action is Action.CONFIRM and (channel, purpose) not in DOUBLE_OPT_IN:
                continue
            recorded.append(
                await record_consent(
                    session,
                    survivor_id,
                    channel,
                    purpose,
                    action,
                    Source.MERGE,
                    actor=actor,
                    evidence=evidence,
                    topic=topic,
                    occurred_at=origin.occurred_at,
                )
            )
    await session.execute(delete(ConsentState).where(ConsentState.customer_id == merged_id))
    return recorded


def _by_key(
    rows: list[tuple[ConsentState, ConsentEvent]],
) -> list[tuple[StateKey, tuple[ConsentState, ConsentEvent]]]:
    return [((s.channel, s.purpose, s.topic), (s, e)) for s, e in rows]
