"""The embedded bot's reading in a process of its own (sastre.bot_reading): the same numbers as
on the loop, for the current FAQ, and nothing lost or stuck when the child dies."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import pytest

from dialog.faq import FaqIndex, load_faq_file
from dialog.faq_store import FaqCatalogue
from dialog.nlu import EmbeddedUnderstander
from sastre import bot_reading
from sastre.bot_reading import LoopReader, ProcessReader, reading_in_a_process
from sastre.config import Settings
from sastre.dialogs import SHIPPED_FAQ, embedded_reader

TEXTS = [
    "¿Cuál es el horario de la tienda?",
    "where is my order SO-482913?",
    "hola",
    "STOP",
    "¿me llamáis mañana entre las 3 y las 5?",  # date pieces, placed later on the loop
]


@pytest.fixture(scope="module")
def understander() -> EmbeddedUnderstander:
    return EmbeddedUnderstander()


def _catalogue(index: FaqIndex | None) -> FaqCatalogue:
    catalogue = FaqCatalogue()
    catalogue._index = index  # as `index()` leaves it after a build
    return catalogue


@pytest.fixture
async def reader(understander: EmbeddedUnderstander) -> AsyncIterator[ProcessReader]:
    index = FaqIndex(load_faq_file(SHIPPED_FAQ))
    reader = ProcessReader(understander, _catalogue(index))
    await reader.start()
    try:
        await _until(lambda: reader.ready, "the child ready")
        yield reader
    finally:
        await reader.close()


async def _until(done: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    # Polled: the child's readiness and death arrive as pipe events no test can wait on.
    for _ in range(int(seconds / 0.02)):
        if done():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


def _index(reader: ProcessReader) -> FaqIndex:
    index = reader._catalogue.current()
    assert isinstance(index, FaqIndex)
    return index


@pytest.mark.parametrize(
    ("setting", "cpus", "expected"),
    [("auto", 1, False), ("auto", 2, True), ("loop", 8, False), ("process", 1, True)],
)
def test_where_the_bot_reads(setting: str, cpus: int, expected: bool) -> None:
    assert reading_in_a_process(setting, cpus) is expected


def test_on_the_loop_reading_is_done_at_once(understander: EmbeddedUnderstander) -> None:
    index = FaqIndex(load_faq_file(SHIPPED_FAQ))
    assert LoopReader(understander, _catalogue(index)).read(TEXTS) is None
    assert len(understander._ahead) == len(TEXTS)
    assert len(index._ahead) == len(TEXTS)
    understander._ahead.take_all(TEXTS)


async def test_the_child_reads_exactly_what_the_loop_would(
    reader: ProcessReader, understander: EmbeddedUnderstander
) -> None:
    reading = reader.read(TEXTS)
    assert reading is not None
    await asyncio.wait_for(reading, 30)
    index = _index(reader)
    assert understander._ahead.take_all(TEXTS) == understander.text_reader.read_all(TEXTS)
    assert index._ahead.take_all(TEXTS) == index.rank_texts(TEXTS)


async def test_texts_handed_in_while_the_child_reads_go_together_next(
    reader: ProcessReader, understander: EmbeddedUnderstander
) -> None:
    first, second, third = reader.read(TEXTS[:1]), reader.read(TEXTS[1:2]), reader.read(TEXTS[2:])
    assert first is not None
    assert second is not None
    assert third is not None
    assert reader._next.texts == TEXTS[1:]  # one request in flight; the rest wait for it
    await asyncio.wait_for(asyncio.gather(first, second, third), 30)
    assert len(understander._ahead) == len(TEXTS)
    understander._ahead.take_all(TEXTS)
    _index(reader)._ahead.take_all(TEXTS)


async def test_a_new_kb_is_sent_to_the_child(
    reader: ProcessReader, understander: EmbeddedUnderstander
) -> None:
    entries = load_faq_file(SHIPPED_FAQ)[:5]
    smaller = FaqIndex(entries)
    reader._catalogue._index = smaller  # the KB changed: the next index built is this one
    reading = reader.read(TEXTS)
    assert reading is not None
    await asyncio.wait_for(reading, 30)
    kept = smaller._ahead.take_all(TEXTS)
    assert kept == smaller.rank_texts(TEXTS)
    assert {entry for ranking in kept for entry, _, _ in ranking} <= set(range(5))
    understander._ahead.take_all(TEXTS)


async def test_a_child_that_dies_is_replaced_and_nobody_waits_for_it(
    reader: ProcessReader, understander: EmbeddedUnderstander
) -> None:
    process = reader._process
    assert process is not None
    process.kill()
    reading = reader.read(TEXTS)  # handed in as it dies: released, read on the loop at its turn
    if reading is not None:
        await asyncio.wait_for(reading, 30)
    await _until(lambda: not reader.ready or reader._process is not process, "the death seen")
    assert reader.read(TEXTS) is None or reader._process is not process
    await _until(lambda: reader.ready and reader._process is not process, "a new child ready")
    again = reader.read(TEXTS)
    assert again is not None
    await asyncio.wait_for(again, 30)


async def test_a_child_that_stops_answering_is_replaced(
    reader: ProcessReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot_reading, "STUCK_AFTER", 0.2)
    process = reader._process
    assert process is not None
    assert process.pid is not None
    os.kill(process.pid, signal.SIGSTOP)  # alive, and answering nothing
    stuck = reader.read(TEXTS)
    assert stuck is not None
    await asyncio.sleep(0.3)
    reader.read(TEXTS)  # the next hand-in finds it stuck: replaced, and nobody waits for it
    assert stuck.done()
    await _until(lambda: reader.ready and reader._process is not process, "a new child ready")
    assert not process.is_alive()


async def test_closing_stops_the_child(understander: EmbeddedUnderstander) -> None:
    reader = ProcessReader(understander, _catalogue(None))
    await reader.start()
    process = reader._process
    assert process is not None
    await _until(lambda: reader.ready, "the child ready")
    reading = reader.read(TEXTS)  # no FAQ index: the intent model's reading alone
    assert reading is not None
    await asyncio.wait_for(reading, 30)
    await reader.close()
    assert not process.is_alive()
    assert reader.read(TEXTS) is None
    understander._ahead.take_all(TEXTS)


async def test_the_setting_chooses_the_reader_and_the_app_stops_it(settings: Settings) -> None:
    assert isinstance(await embedded_reader(settings, FaqCatalogue(), AsyncExitStack()), LoopReader)
    async with AsyncExitStack() as stack:
        reader = await embedded_reader(
            settings.model_copy(update={"bot_reader": "process"}), FaqCatalogue(), stack
        )
        assert isinstance(reader, ProcessReader)
        process = reader._process
        assert process is not None
        assert process.is_alive()
    assert not process.is_alive()
