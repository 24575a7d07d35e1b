"""Writing a large share of a table at once: checks and indexes built once, after.

Adding millions of rows one B-tree entry and one foreign-key check at a time costs several times
more than sorting them once and checking them with one join. PostgreSQL DDL is transactional, so
a failed load rolls the drop back with everything else. The locks keep concurrent writers out
until the caller commits (and readers of the table itself wait): for initial and very large
loads only, which `is_smaller_than` tells.

`set_aside` and `restore` are for PostgreSQL; `drop_indexes` and `build_indexes` work on both
databases (SQLite's DDL is transactional too, and its writer holds the database anyway).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Index, Table, func, literal, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import AddConstraint, CreateIndex, DropConstraint, DropIndex

__all__ = ["build_indexes", "drop_indexes", "is_smaller_than", "restore", "set_aside"]


async def is_smaller_than(conn: AsyncConnection, table: Table, rows: int) -> bool:
    """Whether `table` holds fewer than `rows` rows (counting stops there)."""
    stored = select(literal(1)).select_from(table).limit(rows).subquery("stored")
    return int(await conn.scalar(select(func.count()).select_from(stored)) or 0) < rows


async def set_aside(conn: AsyncConnection, table: Table, *, keys: bool) -> None:
    """Lock `table` and drop its foreign keys; with `keys`, its primary key and indexes too.

    The tables its foreign keys refer to are locked first, as adding the keys back will.
    """
    for foreign_key in table.foreign_key_constraints:
        referred = foreign_key.referred_table.name
        await conn.execute(text(f"LOCK TABLE {referred} IN SHARE ROW EXCLUSIVE MODE"))
    await conn.execute(text(f"LOCK TABLE {table.name} IN ACCESS EXCLUSIVE MODE"))
    for foreign_key in table.foreign_key_constraints:
        await conn.execute(DropConstraint(foreign_key))
    if keys:
        for index in table.indexes:
            await conn.execute(DropIndex(index))
        await conn.execute(DropConstraint(table.primary_key))


async def restore(conn: AsyncConnection, table: Table, *, keys: bool) -> None:
    """Build what `set_aside` dropped, exactly as the models declare it."""
    await conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
    if keys:
        await conn.execute(AddConstraint(table.primary_key))
        for index in table.indexes:
            await conn.execute(CreateIndex(index))
    for foreign_key in table.foreign_key_constraints:
        await conn.execute(AddConstraint(foreign_key))


async def drop_indexes(conn: AsyncConnection, indexes: Sequence[Index]) -> None:
    for index in indexes:
        await conn.execute(DropIndex(index))


async def build_indexes(conn: AsyncConnection, indexes: Sequence[Index]) -> None:
    """Build `indexes` exactly as the models declare them (after `drop_indexes`)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
    for index in indexes:
        await conn.execute(CreateIndex(index))
