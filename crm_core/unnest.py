"""Many rows in one statement on PostgreSQL: a column's values as one array, the arrays unnested.

Through the driver's executemany, writing N rows is N executions on the server (each with its own
portal, executor start and foreign-key trigger queue) and N rows of parameters processed one by
one on the event loop, by SQLAlchemy and then by asyncpg. `INSERT ... SELECT ... FROM unnest($1,
$2, ...)` is one execution for any N, with one statement text and so one prepared plan, and the
driver encodes each column as one array in compiled code.

UPDATEs find their rows by key (`update_by_key`: `id = ANY($keys)`, each row taking its values
at its key's position in the arrays), which the key's index answers. A statement's plan is
cached, though, and one made while a table was nearly empty reads the whole table, whatever the
statement's form: on the benchmark's fresh database an `= ANY` UPDATE of 24 messages took 1-2 ms
by the end of a run (auto_explain), as a join with the unnested arrays had before it. On a live
database autovacuum's ANALYZE, within a minute of a table's growth, makes PostgreSQL plan again.

Several such INSERTs can be one statement: the rows of one naming rows of another, joined in SQL
on a key that is no column (`given_rows` with `keys`). A reply's outbox row and timeline entry
find the id the reply's INSERT returned by the reply's provider id, in the same round trip.

SQLite has no arrays, and nothing to gain: its statements run in the process, and a prepared
statement stepped N times is already what executemany does there. Callers keep executemany on
SQLite (`unnested` says which to use).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from functools import cache, partial
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    String,
    Table,
    Text,
    Update,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement, Grouping, TextClause
from sqlalchemy.sql.schema import (
    CallableColumnDefault,
    ColumnElementColumnDefault,
    ScalarElementColumnDefault,
)
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import TypeEngine

__all__ = [
    "as_arrays",
    "changes_as_arrays",
    "given_rows",
    "given_value",
    "insert_unnested",
    "python_defaults",
    "unnested",
    "update_by_key",
]


def unnested(session: AsyncSession) -> bool:
    """Whether this session's database takes rows as arrays (PostgreSQL)."""
    return session.get_bind().dialect.name == "postgresql"


@cache  # asked for every column of every batch; a table's columns keep their types
def _is_json(table: Table, name: str) -> bool:
    return isinstance(table.c[name].type, JSON)


def _element(table: Table, name: str) -> TypeEngine[Any]:
    """The type of the array a column's values go in: the column's own, so they go through its
    conversion (aware datetimes, say), except for two. A JSON column's values come as text,
    parsed by the database (`given_value`): SQLAlchemy would take a JSON list inside the array for
    one more dimension of it. A string column's come as text of any length: an explicit cast
    to `varchar(n)[]` would cut a longer value short without a word, where the INSERT's own
    assignment to the column refuses it, as a plain INSERT does."""
    column_type = table.c[name].type
    return Text() if _is_json(table, name) or isinstance(column_type, String) else column_type


def given_rows(
    table: Table,
    columns: Sequence[str],
    *,
    prefix: str = "all",
    keys: Sequence[str] = (),
    name: str = "given",
) -> TableValuedAlias:
    """`unnest(:{prefix}_a, ..., :{prefix}_k) WITH ORDINALITY AS {name}(a, ..., k, ordinality)`:
    the table's columns typed by `_element`, then `keys`, text values that are no column of it
    (what another part of the statement joins on). Its ordinality is the rows' order as given.
    A statement with two of these gives them different prefixes and names."""
    arrays = [
        bindparam(f"{prefix}_{column}", type_=postgresql.ARRAY(_element(table, column)))
        for column in columns
    ]
    arrays += [bindparam(f"{prefix}_{key}", type_=postgresql.ARRAY(Text())) for key in keys]
    unnested_ = func.unnest(*arrays).table_valued(*columns, *keys, with_ordinality="ordinality")
    return unnested_.render_derived(name=name)


def given_value(table: Table, rows: TableValuedAlias, name: str) -> ColumnElement[Any]:
    """A column of `given_rows` as the table's column takes it (JSON parsed from its text)."""
    value = rows.c[name]
    return cast(value, postgresql.JSONB) if _is_json(table, name) else value


def insert_unnested(
    table: Table, columns: Sequence[str], *, prefix: str = "all"
) -> postgresql.Insert:
    """INSERT of the rows `as_arrays` made of these columns (every column the rows set: the
    columns' Python-side defaults are not applied). PostgreSQL's own INSERT, so a caller can
    add ON CONFLICT; with RETURNING, rows come back in no promised order."""
    rows = given_rows(table, columns, prefix=prefix)
    chosen = select(*(given_value(table, rows, name) for name in columns))
    return postgresql.insert(table).from_select(list(columns), chosen, include_defaults=False)


def python_defaults(table: Table, given: Collection[str]) -> dict[str, ColumnElement[Any]]:
    """The defaults of the table's columns not `given`, as values for an INSERT ... SELECT
    inside a larger statement, where SQLAlchemy applies none (it fills them in for a statement
    that is itself the INSERT): a constant as itself, a SQL expression inline, and a callable
    (a time, a fresh `{}`) as a parameter it computes anew at each execution of the statement,
    once for all its rows, as SQLAlchemy does for an INSERT ... SELECT. A callable that needs
    the execution's context has none to read here: it is refused when the statement is made."""
    values: dict[str, ColumnElement[Any]] = {}
    for column in table.c:
        default = column.default
        if column.name in given or default is None:
            continue
        name = f"default_{column.name}"
        if isinstance(default, ScalarElementColumnDefault):
            values[column.name] = bindparam(name, default.arg, type_=column.type)
        elif isinstance(default, ColumnElementColumnDefault):
            expression = default.arg  # text("now()") or func.now()
            if isinstance(expression, TextClause):
                values[column.name] = literal_column(expression.text)
            else:
                values[column.name] = expression
        elif isinstance(default, CallableColumnDefault):
            if _reads_context(default):
                raise TypeError(f"{table.name}.{column.name}: its default reads its context")
            made: Any = default.arg  # wrapped to take the execution's context, unused
            values[column.name] = bindparam(name, callable_=partial(made, None), type_=column.type)
    return values


def _reads_context(default: CallableColumnDefault) -> bool:
    """SQLAlchemy wraps a function of no arguments to take the context and ignore it, and keeps
    one that takes it as written (and so, here, an object that is callable but has no name:
    refused too, to be safe)."""
    return getattr(default.arg, "__wrapped__", None) is None


def as_arrays(
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    prefix: str = "all",
    keys: Sequence[str] = (),
) -> dict[str, list[Any]]:
    """The parameters of an unnested statement on `table`: one list per column and key (see
    `given_rows`), rows in order."""
    arrays: dict[str, list[Any]] = {}
    for name in columns:
        values = [row[name] for row in rows]
        json_ = _is_json(table, name)
        arrays[f"{prefix}_{name}"] = [json.dumps(v) for v in values] if json_ else values
    for key in keys:  # a row without one has it NULL
        arrays[f"{prefix}_{key}"] = [row.get(key) for row in rows]
    return arrays


def update_by_key(
    table: Table, columns: Sequence[str], *, key: str = "id", prefix: str = "all"
) -> Update:
    """UPDATE of the rows whose `key` is in the array `:{prefix}_{key}`, found by the key's index.
    Each row takes a column's value at its key's position in `:{prefix}_{column}` where the
    same position of `:{prefix}_set_{column}` is true, and keeps its own where false: rows of
    one batch change different columns (`changes_as_arrays` makes the parameters). A key given
    twice takes its first position's values."""
    keys = bindparam(f"{prefix}_{key}", type_=postgresql.ARRAY(_element(table, key)))
    position = func.array_position(keys, table.c[key])
    values: dict[str, ColumnElement[Any]] = {}
    for name in columns:
        # (the array)[i]: without the parentheses, $n::text[][i] is not SQL
        array = bindparam(f"{prefix}_{name}", type_=postgresql.ARRAY(_element(table, name)))
        new: ColumnElement[Any] = Grouping(array)[position]
        if _is_json(table, name):
            new = cast(new, postgresql.JSONB)
        changed = Grouping(bindparam(f"{prefix}_set_{name}", type_=postgresql.ARRAY(Boolean())))
        values[name] = case((changed[position], new), else_=table.c[name])
    return update(table).where(table.c[key] == any_(keys)).values(values)


def changes_as_arrays(
    table: Table,
    changes: Sequence[tuple[Any, Mapping[str, Any]]],
    columns: Sequence[str],
    *,
    prefix: str = "all",
    key: str = "id",
) -> dict[str, list[Any]]:
    """The parameters of `update_by_key` for (key, {column: new value}) pairs: every column of
    `columns`, a row that does not change it marked so (its value there is NULL and unused)."""
    arrays: dict[str, list[Any]] = {f"{prefix}_{key}": [row_key for row_key, _ in changes]}
    for name in columns:
        json_ = _is_json(table, name)
        arrays[f"{prefix}_{name}"] = [
            (json.dumps(new[name]) if json_ else new[name]) if name in new else None
            for _, new in changes
        ]
        arrays[f"{prefix}_set_{name}"] = [name in new for _, new in changes]
    return arrays
