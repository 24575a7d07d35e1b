"""A batch's replies, their outbox rows, its timeline entries, what the bot made of its
messages and what its turns changed in their conversations, in one PostgreSQL statement.

The first three are INSERTs of rows given as arrays (`crm_core.unnest`), the last two UPDATEs
by key, and written one after the other they were five round trips a batch:
while a batch waits for one, the event loop serves the other lane and the webhooks, and the wait
costs a round trip's worth of latency however little the server does. Here they are
data-modifying parts of one statement:

    WITH reply AS (INSERT INTO messages ... RETURNING id, provider_id),
         queued AS (INSERT INTO outbox ... SELECT reply.id, ... JOIN reply ON provider_id),
         noted AS (INSERT INTO interactions ... LEFT JOIN reply ON provider_id),
         read AS (UPDATE messages SET intent = ..., confidence = ..., outcome = ...
                  WHERE id = ANY(ids)),
         changed AS (UPDATE conversations SET language = CASE ... END, ... WHERE id = ANY(ids))
    SELECT id, provider_id FROM reply

The UPDATEs find their rows by key (`= ANY`), each row's values at the position of its id in
the arrays, through the primary key's index once the statistics say the table is not tiny (a
plan cached on a nearly empty table reads it whole: `crm_core.unnest`). The first touches
messages stored by earlier statements of the transaction, never the replies this one inserts;
the second sets in each conversation the columns its turn changed (one turn its language,
another its count of failed turns), and `updated_at`.

A reply's outbox row and timeline entry name it by the provider id it is written with (unique,
made before the statement), and take the id its INSERT returned: an outbox row its `message_id`,
an entry `message_id` in its data. PostgreSQL runs every part of a WITH exactly once, referenced
or not, and checks the foreign keys (outbox to messages) at the end of the statement, when the
replies are there. Entries are inserted in the order given (their ordinality): the timeline
orders entries of one moment by id, a customer's message before the answer to it.

SQLite keeps one statement per table (`dialog.inbound.sql.write`): its statements run in the
process, and a round trip there costs nothing to save.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, Final

from sqlalchemy import BigInteger, Float, Select, Text, any_, bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import Grouping
from sqlalchemy.types import TypeEngine

from crm_core.models import interactions_table
from crm_core.timeline import ENTRY_COLUMNS
from crm_core.unnest import (
    as_arrays,
    changes_as_arrays,
    given_rows,
    given_value,
    insert_unnested,
    update_by_key,
)
from dialog.models import conversations_table, messages_table
from dialog.outbox.models import outbox_table
from dialog.outbox.queue import ROW_COLUMNS

__all__ = ["READ_COLUMNS", "REPLY", "write_together"]

REPLY: Final = "reply"  # the key of a row naming a reply: that reply's provider id
# What the bot made of a customer's message (`dialog.inbound.sql.write`), by the message's id.
READ_COLUMNS: Final[dict[str, TypeEngine[Any]]] = {
    "intent": Text(),
    "confidence": Float(),
    "outcome": Text(),
}
# An outbox row's columns but the message's id, which the statement fills in.
_QUEUED_COLUMNS = tuple(name for name in ROW_COLUMNS if name != "message_id")


@cache
def _statement(message_columns: tuple[str, ...], changed: tuple[str, ...]) -> Select[Any]:
    messages, outbox, interactions = messages_table, outbox_table, interactions_table
    reply = (
        insert_unnested(messages, message_columns, prefix="reply")
        .returning(messages.c.id, messages.c.provider_id)
        .cte("reply")
    )
    queued_rows = given_rows(
        outbox, _QUEUED_COLUMNS, prefix="queued", keys=(REPLY,), name="queued_given"
    )
    queued = (
        postgresql.insert(outbox)
        .from_select(
            ["message_id", *_QUEUED_COLUMNS],
            select(
                reply.c.id, *(given_value(outbox, queued_rows, name) for name in _QUEUED_COLUMNS)
            ).select_from(queued_rows.join(reply, reply.c.provider_id == queued_rows.c[REPLY])),
            include_defaults=False,
        )
        .cte("queued")
    )
    noted_rows = given_rows(
        interactions, ENTRY_COLUMNS, prefix="noted", keys=(REPLY,), name="noted_given"
    )
    data = given_value(interactions, noted_rows, "data")
    # An entry naming no reply keeps its data as given; a reply's gets the reply's id.
    data_with_id = case(
        (reply.c.id.is_(None), data),
        else_=data.op("||")(func.jsonb_build_object("message_id", reply.c.id)),
    )
    entry = [
        data_with_id if name == "data" else given_value(interactions, noted_rows, name)
        for name in ENTRY_COLUMNS
    ]
    noted = (
        postgresql.insert(interactions)
        .from_select(
            list(ENTRY_COLUMNS),
            select(*entry)
            .select_from(noted_rows.outerjoin(reply, reply.c.provider_id == noted_rows.c[REPLY]))
            .order_by(noted_rows.c.ordinality),
            include_defaults=False,
        )
        .cte("noted")
    )
    ids = bindparam("read_message_id", type_=postgresql.ARRAY(BigInteger()))
    position = func.array_position(ids, messages.c.id)
    read = (
        update(messages)
        .where(messages.c.id == any_(ids))
        .values(
            {
                # (the array)[i]: without the parentheses, $n::text[][i] is not SQL
                name: Grouping(bindparam(f"read_{name}", type_=postgresql.ARRAY(kind)))[position]
                for name, kind in READ_COLUMNS.items()
            }
        )
        .cte("read")
    )
    parts = [queued, noted, read]
    if changed:  # (an UPDATE must set something)
        parts.append(update_by_key(conversations_table, changed, prefix="changed").cte("changed"))
    return select(reply.c.id, reply.c.provider_id).add_cte(*parts)


async def write_together(
    session: AsyncSession,
    message_columns: Sequence[str],
    replies: Sequence[dict[str, Any]],
    queued: Sequence[dict[str, Any]],
    entries: Sequence[dict[str, Any]],
    readings: Sequence[dict[str, Any]],
    changes: Sequence[tuple[int, dict[str, Any]]],
) -> dict[str, int]:
    """Write the replies (messages' rows), the outbox rows, the timeline entries, the
    readings (`message_id` and `READ_COLUMNS`) and the conversations' changes (conversation id,
    {column: value}, `updated_at` among them); an outbox row or entry names its reply by
    `REPLY`, or names none (an entry's key None). Returns the replies' ids by provider id."""
    changed = tuple(sorted({name for _, change in changes for name in change}))
    parameters = {
        **changes_as_arrays(conversations_table, changes, changed, prefix="changed"),
        "read_message_id": [row["message_id"] for row in readings],
        **{f"read_{name}": [row[name] for row in readings] for name in READ_COLUMNS},
        **as_arrays(messages_table, replies, message_columns, prefix="reply"),
        **as_arrays(outbox_table, queued, _QUEUED_COLUMNS, prefix="queued", keys=(REPLY,)),
        **as_arrays(interactions_table, entries, ENTRY_COLUMNS, prefix="noted", keys=(REPLY,)),
    }
    rows = await session.execute(_statement(tuple(message_columns), changed), parameters)
    return {row.provider_id: row.id for row in rows}
