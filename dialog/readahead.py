"""Reading messages ahead: the bot's arithmetic for a batch done while the batch before it waits.

The inbound path commits a batch at a time (`dialog.inbound.processor`), and while one batch
waits on the database the next is already queued. Most of what the bot does with a message (the
intent model's scores, the FAQ's ranking of its entries) depends on its text alone, so the
processor hands the queued texts to `read_ahead` and that work fills the event loop's idle
moments instead of lengthening the next batch.

`ReadAhead` is the buffer between the two: what was computed ahead is taken once, by the
message it was computed for. It is not a cache (a text asked twice is computed twice, as it
would be without it), and it is bounded: what is never taken (the text was trimmed differently,
the FAQ changed meanwhile) is dropped oldest first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar, runtime_checkable

__all__ = ["ReadAhead", "Reader", "ReadsAhead"]

V = TypeVar("V")


@runtime_checkable
class ReadsAhead(Protocol):
    """Something that can do part of its work for texts before they are asked about."""

    def read_ahead(self, texts: Sequence[str]) -> None: ...


class Reader(Protocol):
    """Reads queued texts for the bot before their turn (`sastre.bot_reading`): on the event
    loop, or elsewhere (`elsewhere`: then a batch's own texts are worth handing in as it starts,
    and `read` returns what to await before the turn; None when there is nothing to await).
    Reading ahead never decides anything: a text not read in time is read at its turn."""

    elsewhere: bool

    def read(self, texts: Sequence[str]) -> asyncio.Future[None] | None: ...


class ReadAhead(Generic[V]):
    """Values computed ahead for texts, each taken once."""

    def __init__(self, compute_all: Callable[[Sequence[str]], Sequence[V]], capacity: int = 512):
        self._compute_all = compute_all
        self._capacity = capacity
        self._ready: dict[str, list[V]] = {}  # oldest first; a text queued twice holds two
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def fill(self, texts: Sequence[str]) -> None:
        """Compute the values of `texts` (in one call) and keep them until taken."""
        if not texts:
            return
        self.keep(texts, self._compute_all(texts))

    def keep(self, texts: Sequence[str], values: Sequence[V]) -> None:
        """Keep values computed elsewhere (by `compute_all`'s twin in another process)."""
        for text, value in zip(texts, values, strict=True):
            self._ready.setdefault(text, []).append(value)
            self._count += 1
        self._bound()

    def _bound(self) -> None:
        while self._count > self._capacity:
            oldest = next(iter(self._ready))
            self._count -= len(self._ready.pop(oldest))

    def take_all(self, texts: Sequence[str]) -> list[V]:
        """The value of each text: the one computed ahead if there is one (taken), otherwise
        computed now, all those missing in one call."""
        taken: dict[int, V] = {}
        missing: list[int] = []
        for n, text in enumerate(texts):
            values = self._ready.get(text)
            if not values:
                missing.append(n)
                continue
            taken[n] = values.pop()
            self._count -= 1
            if not values:
                del self._ready[text]
        if missing:
            computed = self._compute_all([texts[n] for n in missing])
            taken.update(zip(missing, computed, strict=True))
        return [taken[n] for n in range(len(texts))]
