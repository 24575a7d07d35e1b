"""The inbound path's batches are quick writes (`sastre.db.quick_writer_for`): on SQLite a
message costs the event loop two trips to the database's thread, the BEGIN IMMEDIATE and the
COMMIT, however many statements its turn runs between them."""

from __future__ import annotations

from pathlib import Path

import pytest

from sastre.app import create_app
from sastre.config import load_settings
from sastre.db import migrate
from tests.sastre.conftest import ClientFactory
from tests.sastre.test_webhooks_twilio import INBOUND, post, sms, with_sms
from tests.support.sqlite_trips import thread_trips


async def test_an_sms_turn_takes_two_trips_to_sqlites_thread(
    aiohttp_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'quick.db'}"
    await migrate(url)
    settings = with_sms(
        load_settings(_env_file=None, database_url=url, secret_key="test-secret-key-0123456789")
    )
    client = await aiohttp_client(create_app(settings))
    trips = thread_trips(monkeypatch)
    # A first message: a lead created, a conversation opened, the message stored, the bot's
    # answer stored and queued, the timeline written.
    assert (await post(client, INBOUND, sms("¿cuál es el horario?", 1))).status == 200
    assert trips == ["<lambda>", "commit"]
