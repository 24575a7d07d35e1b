"""Whether a database already has every migration, found without loading the models.

Alembic's own upgrade runs `migrations/env.py`, which imports every table of every package (the
FAQ's among them, and with it the FAQ matcher's scientific libraries): seconds before a short
command such as `sastre token create` can begin. Comparing the database's revision with the
newest migration script costs a few milliseconds, so commands upgrade only when there is
something to apply.
"""

from __future__ import annotations

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from sastre.db import MIGRATIONS, create_engine

__all__ = ["is_up_to_date"]


def _current_heads(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


async def is_up_to_date(url: str) -> bool:
    """True when the database at `url` is at the newest revision of every migration branch."""
    newest = set(ScriptDirectory(str(MIGRATIONS)).get_heads())
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_current_heads) == newest
    finally:
        await engine.dispose()
