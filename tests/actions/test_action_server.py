"""rasa-sdk's own action server, serving our actions, answers a real Rasa action call.

The server runs in a subprocess (Sanic owns its event loop and signal handlers), configured the
way `sastre actions` configures it: settings from the environment, the database opened on the
server's loop and closed when it stops.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crm_core.customers import upsert_customer
from crm_core.models import InteractionKind
from crm_core.records import parse_customer
from crm_core.timeline import add_interaction
from sastre.db import SessionMaker

ROOT = Path(__file__).resolve().parents[2]
SERVER = """
import socket
from contextlib import asynccontextmanager

from actions.deps import ActionDeps
from actions.runner import serve
from sastre.config import load_settings
from sastre.db import database

settings = load_settings(_env_file=None)


@asynccontextmanager
async def resources():
    async with database(settings.database_url) as (_, sessionmaker):
        yield ActionDeps(
            sessionmaker=sessionmaker,
            default_region=settings.default_region,
            default_timezone=settings.default_timezone,
            public_url=settings.external_url,
            secret=settings.secret(),
            brand="Sastre",
        )


# Port 0: the system picks a free port as the socket binds, so no other process can race for
# it; the port is said once the server answers.
listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]
serve(resources=resources, sock=listener, ready=lambda: print("PORT", port, flush=True))
"""


@pytest.fixture
async def action_server(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    env = {
        **os.environ,
        "SASTRE_DATABASE_URL": database_url,
        "SASTRE_SECRET_KEY": "test-secret-key-0123456789",
        "SASTRE_DEFAULT_TIMEZONE": "Europe/Madrid",
    }
    log = tmp_path / "action-server.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SERVER,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=output,
        )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(60):
            # Whatever else the server prints comes first; an empty line is its end.
            while (line := await process.stdout.readline()) and not line.startswith(b"PORT "):
                pass
        assert line, f"the action server did not start:\n{tail(log)}"
        url = f"http://127.0.0.1:{int(line.split()[1])}"
        await assert_healthy(url)
        yield url
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:  # pragma: no cover - a stuck server
            process.kill()
            await process.wait()


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


async def assert_healthy(url: str) -> None:
    async with aiohttp.ClientSession() as client, client.get(f"{url}/health") as response:
        assert response.status == 200


def action_call(action: str, customer_id: int, entities: list[dict[str, Any]]) -> dict[str, Any]:
    """What Rasa 3.x POSTs to the action endpoint."""
    return {
        "next_action": action,
        "sender_id": str(customer_id),
        "version": "3.6.20",
        "domain": {
            "version": "3.1",
            "intents": ["order_status"],
            "entities": ["order_number"],
            "slots": {"order_number": {"type": "text", "mappings": []}},
            "responses": {},
            "actions": [action],
        },
        "tracker": {
            "sender_id": str(customer_id),
            "slots": {"order_number": None, "language": None, "channel": "webchat"},
            "latest_message": {
                "text": "where is my order SO-424242?",
                "intent": {"name": "order_status", "confidence": 0.97},
                "entities": entities,
                "intent_ranking": [{"name": "order_status", "confidence": 0.97}],
            },
            "latest_event_time": 1_760_000_000.0,
            "followup_action": None,
            "paused": False,
            "events": [
                {"event": "action", "timestamp": 1_760_000_000.0, "name": "action_listen"},
                {
                    "event": "user",
                    "timestamp": 1_760_000_000.0,
                    "text": "where is my order SO-424242?",
                    "parse_data": {"intent": {"name": "order_status", "confidence": 0.97}},
                    "input_channel": "rest",
                },
            ],
            "latest_input_channel": "rest",
            "active_loop": {},
            "latest_action": {"action_name": "action_listen"},
            "latest_action_name": "action_listen",
        },
    }


async def test_action_server_answers_a_rasa_action_call(
    sessionmaker: SessionMaker, action_server: str
) -> None:
    async with sessionmaker.begin() as session:
        record = parse_customer({"external_id": "C-1", "language": "en"}, "ES")
        customer, _ = await upsert_customer(session, record)
        await add_interaction(
            session,
            customer.id,
            InteractionKind.PURCHASE,
            "Purchase SO-424242",
            data={"order_id": "SO-424242", "item": "linen shirt", "status": "delivered"},
            occurred_at=datetime(2026, 3, 2, 12, tzinfo=UTC),
        )
    entities = [{"entity": "order_number", "value": "SO-424242", "start": 18, "end": 27}]
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{action_server}/actions") as response:
            assert response.status == 200
            names = {item["name"] for item in await response.json()}
        async with client.post(
            f"{action_server}/webhook",
            json=action_call("action_order_status", customer.id, entities),
        ) as response:
            assert response.status == 200
            body = await response.json()
        async with client.post(
            f"{action_server}/webhook", json=action_call("action_unknown", customer.id, [])
        ) as response:
            missing = response.status
    assert {"action_order_status", "action_handoff", "action_request_callback"} <= names
    assert body["events"] == [
        {"event": "slot", "timestamp": None, "name": "order_number", "value": "SO-424242"}
    ]
    (reply,) = body["responses"]
    assert reply["text"] == "Your order SO-424242 (linen shirt), placed on 2 March 2026: delivered."
    assert {"buttons", "elements", "custom", "image", "attachment", "response"} <= reply.keys()
    assert missing == 404
