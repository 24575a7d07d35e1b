"""The inbound path's sessions as the service makes them (`sastre.db.quick_writer_for`)."""

from __future__ import annotations

from sastre.db import SessionMaker, quick_writer_for

__all__ = ["quick"]


def quick(sessionmaker: SessionMaker) -> SessionMaker:
    """Quick-writer sessions on the engine of `sessionmaker` (a test's writer)."""
    return quick_writer_for(sessionmaker.kw["bind"])
