"""Rows written as arrays (PostgreSQL) are the rows a plain INSERT writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import BindParameter

from crm_core import Customer
from crm_core.models import customers_table, interactions_table
from crm_core.unnest import (
    as_arrays,
    changes_as_arrays,
    insert_unnested,
    python_defaults,
    unnested,
    update_by_key,
)
from sastre.db import SessionMaker

COLUMNS = ("customer_id", "kind", "channel", "summary", "actor", "data", "occurred_at")
T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
rows = st.lists(
    st.fixed_dictionaries(
        {
            "customer_id": st.integers(1, 10**12),
            "kind": st.sampled_from(["message_in", "note"]),
            "channel": st.none() | st.just("sms"),
            "summary": st.text(max_size=8),
            "actor": st.none() | st.text(max_size=5),
            "data": json_values,
            "occurred_at": st.just(T0),
        }
    ),
    max_size=5,
)


@given(rows)
def test_arrays_hold_each_column_in_row_order_json_as_its_text(given_rows: list[Any]) -> None:
    arrays = as_arrays(interactions_table, given_rows, COLUMNS)
    assert set(arrays) == {f"all_{name}" for name in COLUMNS}
    for name in COLUMNS:
        values = arrays[f"all_{name}"]
        if name == "data":  # one level of list would be a dimension of the array: text instead
            values = [json.loads(value) for value in values]
        assert values == [row[name] for row in given_rows]


async def _stored(sessionmaker: SessionMaker, customer_id: int) -> list[tuple[Any, ...]]:
    columns = [interactions_table.c[name] for name in COLUMNS]
    query = select(*columns).where(interactions_table.c.customer_id == customer_id)
    async with sessionmaker() as session:
        return [tuple(row) for row in await session.execute(query.order_by("occurred_at"))]


async def test_rows_inserted_as_arrays_are_those_a_plain_insert_writes(
    sessionmaker: SessionMaker,
) -> None:
    """JSON of every shape (an empty list, a list of lists, null), NULLs, aware datetimes."""
    async with sessionmaker.begin() as session:
        plain, arrayed = Customer(), Customer()
        session.add_all([plain, arrayed])
        await session.flush()
        plain_id, arrayed_id = plain.id, arrayed.id
    datas: list[Any] = [[], [[1, 2], []], {"a": [None]}, None, "text", {}]
    entries = [
        {
            "kind": "note",
            "channel": None if n % 2 else "sms",
            "summary": f"entry {n}",
            "actor": None if n % 3 else "bot",
            "data": data,
            "occurred_at": T0 + timedelta(minutes=n),
        }
        for n, data in enumerate(datas)
    ]
    async with sessionmaker.begin() as session:
        await session.execute(
            insert(interactions_table), [{"customer_id": plain_id, **e} for e in entries]
        )
        arrayed_rows = [{"customer_id": arrayed_id, **e} for e in entries]
        if unnested(session):
            statement = insert_unnested(interactions_table, COLUMNS)
            await session.execute(statement, as_arrays(interactions_table, arrayed_rows, COLUMNS))
        else:  # SQLite: what its callers do instead
            await session.execute(insert(interactions_table), arrayed_rows)
    written = await _stored(sessionmaker, arrayed_id)
    assert [row[1:] for row in written] == [
        row[1:] for row in await _stored(sessionmaker, plain_id)
    ]
    assert [row[5] for row in written] == datas


async def test_a_value_longer_than_its_column_is_refused_not_cut_short(
    sessionmaker: SessionMaker,
) -> None:
    """As a plain INSERT refuses it on PostgreSQL. Cut short, two different provider ids could
    become one, and the second message be dropped as the first one's duplicate."""
    async with sessionmaker.begin() as session:
        if not unnested(session):
            pytest.skip("SQLite holds a string of any length in any column")
        customer = Customer()
        session.add(customer)
        await session.flush()
        customer_id = customer.id
    long_kind = "message_in" + "x" * 20  # the column holds 16 characters
    row = {name: None for name in COLUMNS} | {
        "customer_id": customer_id,
        "kind": long_kind,
        "summary": "",
        "data": {},
        "occurred_at": T0,
    }
    statement = insert_unnested(interactions_table, COLUMNS)
    arrays = as_arrays(interactions_table, [row, row], COLUMNS)
    with pytest.raises(DBAPIError, match="too long"):
        async with sessionmaker.begin() as session:
            await session.execute(statement, arrays)
    assert await _stored(sessionmaker, customer_id) == []


def test_keys_go_as_plain_lists_under_the_prefix_none_where_a_row_has_none() -> None:
    entries = [
        {
            "customer_id": 1,
            "kind": "note",
            "channel": None,
            "summary": "a",
            "actor": None,
            "data": {},
            "occurred_at": T0,
            "reply": "sastre-1",
        },
        {
            "customer_id": 1,
            "kind": "note",
            "channel": None,
            "summary": "b",
            "actor": None,
            "data": {},
            "occurred_at": T0,
        },
    ]
    arrays = as_arrays(interactions_table, entries, COLUMNS, prefix="noted", keys=("reply",))
    assert set(arrays) == {f"noted_{name}" for name in (*COLUMNS, "reply")}
    assert arrays["noted_reply"] == ["sastre-1", None]
    assert arrays["noted_summary"] == ["a", "b"]


CHANGEABLE = ("name", "language", "revenue_cents", "attributes", "updated_at")
changes = st.fixed_dictionaries(
    {},
    optional={
        "name": st.none() | st.text(max_size=5),
        "language": st.sampled_from(["es", "en"]),
        "revenue_cents": st.integers(0, 10**12),
        "attributes": st.dictionaries(st.text(max_size=3), json_values, max_size=2),
        "updated_at": st.just(T0),
    },
)


@given(st.lists(changes, max_size=5))
def test_changes_go_with_a_mask_per_column_json_as_its_text(given_changes: list[Any]) -> None:
    pairs = [(n, change) for n, change in enumerate(given_changes)]
    arrays = changes_as_arrays(customers_table, pairs, CHANGEABLE, prefix="c")
    assert arrays["c_id"] == list(range(len(given_changes)))
    for name in CHANGEABLE:
        assert arrays[f"c_set_{name}"] == [name in change for change in given_changes]
        for value, change in zip(arrays[f"c_{name}"], given_changes, strict=True):
            if name not in change:
                assert value is None
            else:
                assert (json.loads(value) if name == "attributes" else value) == change[name]


async def test_rows_updated_by_key_change_only_the_columns_each_was_given(
    sessionmaker: SessionMaker,
) -> None:
    """As one plain UPDATE per row does: a row changes what it names (to NULL too), keeps the
    rest, and rows not named are left alone."""
    async with sessionmaker.begin() as session:
        if not unnested(session):
            pytest.skip("SQLite runs one UPDATE per row (see its callers)")
        # Two groups alike: the first changed row by row, the second in one statement.
        made = [
            Customer(name=f"c{n % 4}", language="en", attributes={"n": n % 4}) for n in range(8)
        ]
        session.add_all(made)
        await session.flush()
        ids = [customer.id for customer in made]
    wanted: list[dict[str, Any]] = [
        {"name": "Ana", "attributes": [[1], {"x": None}]},
        {"language": "es", "revenue_cents": 7},
        {},
        {"name": None, "updated_at": T0},
    ]
    # updated_at apart: a plain UPDATE not naming it sets it to now (its onupdate)
    columns = [customers_table.c[name] for name in ("id", *CHANGEABLE[:-1])]

    async def stored(chosen: list[int]) -> list[tuple[Any, ...]]:
        async with sessionmaker() as session:
            query = select(*columns).where(customers_table.c.id.in_(chosen))
            return [tuple(row)[1:] for row in await session.execute(query.order_by("id"))]

    async with sessionmaker() as session:
        before = await session.scalar(select(customers_table.c.updated_at).filter_by(id=ids[6]))
    async with sessionmaker.begin() as session:
        for customer_id, change in zip(ids[:4], wanted, strict=True):
            if change:
                await session.execute(
                    update(customers_table).where(customers_table.c.id == customer_id), change
                )
        pairs = list(zip(ids[4:], wanted, strict=True))
        statement = update_by_key(customers_table, CHANGEABLE, prefix="c")
        await session.execute(
            statement, changes_as_arrays(customers_table, pairs, CHANGEABLE, prefix="c")
        )
    assert await stored(ids[4:]) == await stored(ids[:4])
    assert [row[3] for row in await stored(ids[4:])] == [
        [[1], {"x": None}],
        {"n": 1},
        {"n": 2},
        {"n": 3},
    ]
    async with sessionmaker() as session:
        touched = select(customers_table.c.updated_at).where(customers_table.c.id.in_(ids[6:]))
        assert list(await session.scalars(touched.order_by("id"))) == [before, T0]


def test_defaults_for_an_insert_select_are_made_anew_at_each_execution() -> None:
    """A constant as itself, a SQL expression inline, a callable (a fresh `{}`, a time) as a
    parameter computed when the statement runs, not once for ever when it is made."""
    calls = iter(range(100))
    table = Table(
        "defaults_probe",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("given", Integer),
        Column("tier", String(10), default="STANDARD"),
        Column("seen", DateTime, default=func.now()),
        Column("data", JSON, default=dict),
        Column("serial", Integer, default=lambda: next(calls)),
        Column("plain", Integer),
    )
    defaults = python_defaults(table, ("id", "given"))
    assert set(defaults) == {"tier", "seen", "data", "serial"}
    tier, data, serial = (defaults[name] for name in ("tier", "data", "serial"))
    assert isinstance(tier, BindParameter)
    assert tier.effective_value == "STANDARD"
    assert "now()" in str(defaults["seen"])
    assert isinstance(data, BindParameter)
    assert isinstance(serial, BindParameter)
    assert data.effective_value == {}
    assert data.effective_value is not data.effective_value
    assert [serial.effective_value for _ in range(3)] == [0, 1, 2]


def test_a_default_that_reads_its_context_is_refused() -> None:
    table = Table(
        "context_probe",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("copy", Integer, default=lambda context: context.get_current_parameters()["id"]),
    )
    with pytest.raises(TypeError, match=r"context_probe\.copy"):
        python_defaults(table, ("id",))
