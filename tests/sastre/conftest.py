"""Fixtures for the running service: an app on a real database and a token per role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from sastre.app import create_app
from sastre.auth import Role, create_token
from sastre.config import Settings
from sastre.db import SessionMaker

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
async def client(aiohttp_client: ClientFactory, settings: Settings) -> Client:
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def tokens(sessionmaker: SessionMaker) -> dict[Role, str]:
    async with sessionmaker.begin() as session:
        return {role: await create_token(session, role, f"test-{role}") for role in Role}


@pytest.fixture
def auth(tokens: dict[Role, str]) -> Callable[[Role], dict[str, str]]:
    def headers(role: Role = Role.ADMIN) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[role]}"}

    return headers
