"""The FAQ knowledge base in the database: the `faq_entries` table, the functions that read and
change it, and the per-process cache of its built index.

The database is the system of record for the KB, as for everything else: staff edit it through
/api/faq, every change is audited, and the shipped file (dialog/data/faq.yaml) only seeds it.
Each process keeps its own `FaqCatalogue`: building the index takes tens of milliseconds, a
match a fraction of one, so it is built once per version of the KB and reused for every message.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Row, String, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.models import AuditEntry, Base
from crm_core.sqltypes import utcnow
from dialog.faq import (
    DEFAULT_THRESHOLD,
    MAX_ID,
    FaqEntry,
    FaqEntryInvalid,
    FaqIndex,
    FaqMatcher,
    build_entry,
    entry_to_dict,
    load_faq_file,
)

__all__ = [
    "FaqCatalogue",
    "FaqRow",
    "delete_entry",
    "get_entry",
    "load_entries",
    "save_entry",
    "seed_from_file",
]

log = logging.getLogger(__name__)
SYSTEM_ACTOR = "system"


class FaqRow(Base):
    """One KB entry; questions and answers are JSON keyed by language, as in the YAML file."""

    __tablename__ = "faq_entries"

    id: Mapped[str] = mapped_column(String(MAX_ID), primary_key=True)
    questions: Mapped[dict[str, Any]]  # language -> [variant, ...]
    answers: Mapped[dict[str, Any]]  # language -> answer
    tags: Mapped[list[str]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


def _entry_of(row: FaqRow | Row[Any]) -> FaqEntry | None:
    try:
        return build_entry(row.id, row.questions, row.answers, row.tags)
    except FaqEntryInvalid as e:
        # Only a hand edit in SQL gets here (writes go through build_entry): one bad row must
        # not silence the whole KB, so it is left out and said loudly.
        log.error("FAQ entry %r in the database is invalid and is ignored: %s", row.id, e)
        return None


# Plain columns, not ORM objects: read into a caller's session, they cannot be served stale
# from (or left behind in) its identity map.
_COLUMNS = select(FaqRow.id, FaqRow.questions, FaqRow.answers, FaqRow.tags, FaqRow.updated_at)


async def load_entries(session: AsyncSession) -> list[FaqEntry]:
    """Every valid entry, ordered by id."""
    rows = await session.execute(_COLUMNS.order_by(FaqRow.id))
    return [entry for row in rows if (entry := _entry_of(row)) is not None]


async def get_entry(session: AsyncSession, entry_id: str) -> FaqEntry | None:
    row = await session.get(FaqRow, entry_id)
    return None if row is None else _entry_of(row)


async def _upsert(session: AsyncSession, entries: Sequence[FaqEntry]) -> None:
    """Insert or replace rows in one statement, so concurrent writers (two processes seeding an
    empty table at start-up) cannot fail on the primary key."""
    now = utcnow()
    values = [
        {**entry_to_dict(entry), "updated_at": now}
        for entry in entries  # one timestamp: one change
    ]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(FaqRow).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=[FaqRow.id],
        set_={
            name: statement.excluded[name]
            for name in ("questions", "answers", "tags", "updated_at")
        },
    )
    await session.execute(statement)
    # The ORM may hold rows loaded before the statement; they would hide the new values.
    session.expire_all()


async def save_entry(session: AsyncSession, entry: FaqEntry, *, actor: str = SYSTEM_ACTOR) -> bool:
    """Create or replace `entry`, audited; True when it did not exist before."""
    created = await session.get(FaqRow, entry.id) is None
    await _upsert(session, [entry])
    session.add(
        AuditEntry(
            actor=actor,
            action="faq.create" if created else "faq.replace",
            data={"id": entry.id, "languages": sorted(entry.answers)},
        )
    )
    return created


async def delete_entry(session: AsyncSession, entry_id: str, *, actor: str = SYSTEM_ACTOR) -> bool:
    """Remove the entry, audited; False when there was none."""
    result = await session.execute(delete(FaqRow).where(FaqRow.id == entry_id).returning(FaqRow.id))
    if result.scalar_one_or_none() is None:
        return False
    session.add(AuditEntry(actor=actor, action="faq.delete", data={"id": entry_id}))
    return True


async def seed_from_file(
    session: AsyncSession, path: Path, *, only_if_empty: bool = False, actor: str = SYSTEM_ACTOR
) -> int:
    """Upsert every entry of a KB file (YAML or CSV); how many were written.

    Idempotent: seeding twice leaves the same rows. Entries not in the file are kept, so staff
    additions survive a re-seed; entries in it are replaced by the file's version. With
    `only_if_empty`, nothing happens (0) when the table already holds an entry: that is the
    start-up seeding, which must never overwrite what staff changed. A bad file raises
    dialog.faq.FaqFileError, naming every line and field at fault, before anything is written.
    """
    entries = load_faq_file(path)
    if only_if_empty and await session.scalar(select(func.count()).select_from(FaqRow)):
        return 0
    if entries:
        await _upsert(session, entries)
    session.add(
        AuditEntry(
            actor=actor, action="faq.seed", data={"file": path.name, "entries": len(entries)}
        )
    )
    return len(entries)


Fingerprint = tuple[tuple[str, datetime], ...]


async def _fingerprint(session: AsyncSession) -> Fingerprint:
    # Ids with their update times, not count + max(updated_at): a change made by a process
    # whose clock is behind would not move the maximum.
    rows = await session.execute(select(FaqRow.id, FaqRow.updated_at).order_by(FaqRow.id))
    return tuple((entry_id, updated_at) for entry_id, updated_at in rows)


class FaqCatalogue:
    """The index of the current KB, rebuilt only when the entries change.

    `version` counts the builds. A change made through this process calls `invalidate()` and
    shows at the next `index()`; a change made by another process is noticed by a look at the
    ids and update times, taken at most every `recheck` seconds, so every process serves the new
    KB within that delay without reading the whole table for each message.
    """

    def __init__(
        self,
        *,
        threshold: float | None = None,
        recheck: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        matcher: Literal["lexical", "semantic"] = "lexical",
    ) -> None:
        self._factory: Callable[..., FaqMatcher] = FaqIndex
        default = DEFAULT_THRESHOLD
        if matcher == "semantic":
            # Only now: the semantic stack (torch) is an optional extra and slow to import.
            from dialog.faq_semantic import (
                DEFAULT_SEMANTIC_THRESHOLD,
                INSTALL_HINT,
                SemanticFaqIndex,
                semantic_available,
            )

            if not semantic_available():
                raise ImportError(f"SASTRE_FAQ_MATCHER=semantic needs {INSTALL_HINT}")
            self._factory, default = SemanticFaqIndex, DEFAULT_SEMANTIC_THRESHOLD
        self.threshold = default if threshold is None else threshold
        self.version = 0
        self._recheck = recheck
        self._clock = clock
        self._index: FaqMatcher | None = None
        self._fingerprint: Fingerprint | None = None
        self._checked_at = -math.inf
        self._stale = True
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """The KB changed: look again at the next `index()` (and rebuild if it did change)."""
        self._stale = True

    def current(self) -> FaqMatcher | None:
        """The index as last built, without a look at the database (None before the first):
        for work that is merely wasted if the KB changed meanwhile, such as reading ahead."""
        return self._index

    def _fresh(self) -> FaqMatcher | None:
        if self._stale or self._clock() - self._checked_at >= self._recheck:
            return None
        return self._index

    async def index(self, source: AsyncSession | async_sessionmaker[AsyncSession]) -> FaqMatcher:
        """The current index; `source` is the caller's session (reused for the look, e.g. the
        turn's own) or a sessionmaker to open one with. The refresh only reads: give it a
        reader's sessionmaker (sastre.db.reader_for), so that it never waits for a writer."""
        if (index := self._fresh()) is not None:
            return index
        async with self._lock:  # one rebuild, however many messages arrive meanwhile
            if (index := self._fresh()) is not None:
                return index
            if isinstance(source, AsyncSession):
                return await self._refresh(source)
            async with source() as session:
                return await self._refresh(session)

    async def _refresh(self, session: AsyncSession) -> FaqMatcher:
        self._stale = False
        fingerprint = await _fingerprint(session)
        if self._index is not None and fingerprint == self._fingerprint:
            self._checked_at = self._clock()
            return self._index
        rows = list(await session.execute(_COLUMNS.order_by(FaqRow.id)))
        # The fingerprint of the rows actually read: a change landing between the two queries
        # is then seen as a change at the next look, not lost.
        self._fingerprint = tuple((row.id, row.updated_at) for row in rows)
        entries = [entry for row in rows if (entry := _entry_of(row)) is not None]
        # Off the event loop: fitting the vectoriser takes tens of milliseconds.
        self._index = await asyncio.to_thread(self._factory, entries, threshold=self.threshold)
        self._checked_at = self._clock()
        self.version += 1
        log.info("FAQ index version %d built: %d entries", self.version, len(entries))
        return self._index
