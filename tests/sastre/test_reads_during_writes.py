"""While a write transaction is held open, what only reads answers at once: the token check
(`/api/me`), `/healthz` and a customer's page. Each test asserts the writer is still holding its
transaction when the answer has come, so nothing waited for it (no clock involved). On SQLite a
read that took the write lock would wait out the busy timeout and fail."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import insert

from crm_core.models import customers_table
from sastre.auth import Role
from sastre.db import SessionMaker
from tests.sastre.conftest import Client
from tests.support.held_write import write_held

Auth = Callable[..., dict[str, str]]


async def test_the_token_check_does_not_wait_for_a_writer(
    client: Client, auth: Auth, sessionmaker: SessionMaker
) -> None:
    async with write_held(sessionmaker) as writer:
        response = await client.get("/api/me", headers=auth(Role.AGENT))
        assert response.status == 200
        assert (await response.json())["role"] == "agent"
        assert not writer.done()


async def test_healthz_does_not_wait_for_a_writer(
    client: Client, sessionmaker: SessionMaker
) -> None:
    async with write_held(sessionmaker) as writer:
        response = await client.get("/healthz")
        assert response.status == 200
        assert not writer.done()


async def test_a_customer_page_does_not_wait_for_a_writer(
    client: Client, auth: Auth, sessionmaker: SessionMaker
) -> None:
    async with sessionmaker.begin() as session:
        customer_id = (
            await session.execute(
                insert(customers_table).values(name="Ana").returning(customers_table.c.id)
            )
        ).scalar_one()
    async with write_held(sessionmaker) as writer:
        response = await client.get(f"/api/customers/{customer_id}", headers=auth(Role.AGENT))
        assert response.status == 200
        assert (await response.json())["name"] == "Ana"
        assert not writer.done()
