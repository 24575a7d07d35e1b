"""Counting the calls an SQLite connection sends to its thread (`sastre.sqlite_driver`)."""

from __future__ import annotations

from typing import Any

import pytest

from sastre.sqlite_driver import OneTripConnection

__all__ = ["thread_trips"]


def thread_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the name of every call sent to any SQLite connection's thread, in order
    (a statement is a `<lambda>`)."""
    trips: list[str] = []
    original = OneTripConnection._execute

    async def counted(self: OneTripConnection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(OneTripConnection, "_execute", counted)
    return trips
