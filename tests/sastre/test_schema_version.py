"""Commands find whether the database needs migrating without loading Alembic, on both databases."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sastre.db import MIGRATIONS
from sastre.schema_version import is_up_to_date, newest_revisions


def test_the_newest_revisions_are_alembics_heads() -> None:
    assert newest_revisions() == set(ScriptDirectory(str(MIGRATIONS)).get_heads())


async def test_a_migrated_database_is_up_to_date(database_url: str) -> None:
    assert await is_up_to_date(database_url)


async def test_a_database_behind_the_newest_script_is_not(
    database_url: str, engine: AsyncEngine
) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    assert not await is_up_to_date(database_url)


async def test_a_database_never_migrated_is_not(database_url: str, engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("DROP TABLE alembic_version"))
    assert not await is_up_to_date(database_url)
