"""Whether a database already has every migration, found without loading the models or Alembic.

Alembic's own upgrade runs `migrations/env.py`, which imports every table of every package (the
FAQ's among them, and with it the FAQ matcher's scientific libraries): seconds before a short
command such as `sastre token create` can begin. Alembic itself, with every dialect it supports,
is another tenth of a second. So commands compare the revision the database records in
`alembic_version` with the newest migration scripts, read as source text, and load Alembic only
when there is something to apply (or when a script names its revisions in a way this reading
does not follow: then Alembic decides).
"""

from __future__ import annotations

import ast
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from sastre.db import MIGRATIONS, create_engine

__all__ = ["is_up_to_date", "newest_revisions"]


class _Unreadable(Exception):
    """A script's revision names are not plain literals; Alembic has to load it."""


def _literal_names(node: ast.expr | None) -> set[str]:
    if node is None:
        raise _Unreadable
    try:
        value = ast.literal_eval(node)
    except ValueError:
        raise _Unreadable from None
    if value is None:
        return set()
    if isinstance(value, str):
        return {value}
    if isinstance(value, tuple | list) and all(isinstance(item, str) for item in value):
        return set(value)
    raise _Unreadable


def _script_revisions(path: Path) -> tuple[str, set[str]]:
    """(revision, down revisions) from a migration script's module-level assignments."""
    found: dict[str, ast.expr | None] = {}
    for statement in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            found[statement.target.id] = statement.value
        elif isinstance(statement, ast.Assign):
            for target in statement.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = statement.value
    if "revision" not in found or "down_revision" not in found:
        raise _Unreadable
    revision = _literal_names(found["revision"])
    if len(revision) != 1:
        raise _Unreadable
    return revision.pop(), _literal_names(found["down_revision"])


def _alembic_heads() -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory(str(MIGRATIONS)).get_heads())


def newest_revisions() -> set[str]:
    """The heads: every script's revision that no other script builds on."""
    revisions: set[str] = set()
    built_on: set[str] = set()
    try:
        for path in sorted((MIGRATIONS / "versions").glob("*.py")):
            revision, down = _script_revisions(path)
            revisions.add(revision)
            built_on |= down
    except (_Unreadable, SyntaxError):
        return _alembic_heads()
    return revisions - built_on


async def is_up_to_date(url: str) -> bool:
    """True when the database at `url` is at the newest revision of every migration branch."""
    newest = newest_revisions()
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            try:
                rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
            except DBAPIError:  # no such table: never migrated
                return False
            return set(rows.scalars()) == newest
    finally:
        await engine.dispose()
