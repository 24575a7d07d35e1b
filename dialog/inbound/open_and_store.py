"""A batch's new conversations and its customers' messages, in one PostgreSQL statement.

A customer writing with no conversation open gets one, and their message is stored in it: two
INSERTs, the second needing the ids the first makes, and so two round trips a batch whenever a
new customer or a returning one wrote. Here they are one:

    WITH opened AS (INSERT INTO conversations ... ON CONFLICT DO NOTHING
                    RETURNING id, customer_id),
         stored AS (INSERT INTO messages ... SELECT coalesce(given.conversation_id, opened.id)
                    ... LEFT JOIN opened ON customer_id ... ON CONFLICT DO NOTHING
                    RETURNING id, channel, provider_id)
    SELECT id, channel, provider_id, NULL FROM stored
    UNION ALL SELECT id, NULL, NULL, customer_id FROM opened

A message given no conversation (NULL) takes the one opened for its customer (one opening per
customer, one message per customer in a batch). A customer whose conversation another process
opened meanwhile is skipped by the first INSERT (the one-open-conversation index), and so their
message by the second: the caller joins that conversation and stores it then. A message stored
before (a redelivery) is skipped by the second, as `dialog.inbound.sql.store_inbound` does. The
messages are inserted in the order given: the timeline orders one moment's entries by id.

SQLite keeps two statements (`dialog.inbound.sql.store_inbound`): a round trip there costs
nothing to save.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, Final, NamedTuple

from sqlalchemy import BigInteger, CompoundSelect, String, and_, bindparam, func, null, select
from sqlalchemy import cast as sql_cast
from sqlalchemy import text as sql_text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.sqltypes import utcnow
from crm_core.unnest import as_arrays, given_rows, given_value, python_defaults
from dialog.models import INBOUND_ONLY, OPEN_STATES, conversations_table, messages_table

__all__ = ["OPENING_COLUMNS", "Stored", "open_and_store"]

# What an opening gives (`dialog.inbound.sql`); the other columns take their defaults.
OPENING_COLUMNS: Final = ("customer_id", "state", "channel", "address", "language", "flags")


class Stored(NamedTuple):
    """What the statement did: the conversations opened (their ids by customer id) and the
    messages stored, as (id, channel, provider id)."""

    opened: dict[int, int]
    messages: list[tuple[int, str, str]]


@cache
def _statement(message_columns: tuple[str, ...]) -> CompoundSelect[Any]:
    conversations, messages = conversations_table, messages_table
    now = bindparam("open_now", type_=conversations.c.created_at.type)
    openings = given_rows(conversations, OPENING_COLUMNS, prefix="open", name="open_given")
    defaults = python_defaults(conversations, (*OPENING_COLUMNS, "created_at", "updated_at"))
    opened = (
        postgresql.insert(conversations)
        .from_select(
            [*OPENING_COLUMNS, "created_at", "updated_at", *defaults],
            select(
                *(given_value(conversations, openings, name) for name in OPENING_COLUMNS),
                now,
                now,
                *defaults.values(),
            ),
            include_defaults=False,
        )
        .on_conflict_do_nothing(
            index_elements=[conversations.c.customer_id],
            index_where=sql_text(OPEN_STATES),  # the partial unique index's own predicate
        )
        .returning(conversations.c.id, conversations.c.customer_id)
        .cte("opened")
    )
    given = given_rows(messages, message_columns)
    conversation_id = func.coalesce(given.c.conversation_id, opened.c.id)
    values = [
        conversation_id if name == "conversation_id" else given_value(messages, given, name)
        for name in message_columns
    ]
    joined = given.outerjoin(
        opened,
        and_(given.c.conversation_id.is_(None), opened.c.customer_id == given.c.customer_id),
    )
    stored = (
        postgresql.insert(messages)
        .from_select(
            list(message_columns),
            select(*values)
            .select_from(joined)
            .where(conversation_id.is_not(None))
            .order_by(given.c.ordinality),
            include_defaults=False,
        )
        .on_conflict_do_nothing(
            index_elements=[messages.c.channel, messages.c.provider_id],
            index_where=sql_text(INBOUND_ONLY),
        )
        .returning(messages.c.id, messages.c.channel, messages.c.provider_id)
        .cte("stored")
    )
    no_text = sql_cast(null(), String)
    return select(
        stored.c.id, stored.c.channel, stored.c.provider_id, sql_cast(null(), BigInteger)
    ).union_all(select(opened.c.id, no_text, no_text, opened.c.customer_id))


async def open_and_store(
    session: AsyncSession,
    message_columns: Sequence[str],
    openings: Sequence[dict[str, Any]],
    rows: Sequence[dict[str, Any]],
) -> Stored:
    """Open the conversations (rows of `OPENING_COLUMNS`) and store the messages (rows of
    `message_columns`, `conversation_id` None for one whose customer's conversation is among
    the openings)."""
    parameters = {
        "open_now": utcnow(),
        **as_arrays(conversations_table, openings, OPENING_COLUMNS, prefix="open"),
        **as_arrays(messages_table, rows, message_columns),
    }
    result = await session.execute(_statement(tuple(message_columns)), parameters)
    stored = Stored({}, [])
    for id_, channel, provider_id, customer_id in result:
        if customer_id is None:
            stored.messages.append((id_, channel, provider_id))
        else:
            stored.opened[customer_id] = id_
    return stored
