"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL server.

The PostgreSQL and Redis servers are started once per test session (tests/support/servers.py);
each test gets a freshly migrated, empty database.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from sastre.config import Settings, load_settings
from sastre.db import SessionMaker, create_engine, migrate, sessionmaker_for
from tests.support.servers import postgres_server, redis_server

_database_numbers = itertools.count(1)

# Each app the tests start would otherwise spawn its own bot reader (a second of imports each);
# the tests of the reader itself (tests/sastre/test_bot_reading.py) start one on purpose. Set
# here, it reaches the `sastre serve` processes the tests start too.
os.environ.setdefault("SASTRE_BOT_READER", "loop")

# Property tests are deterministic unless asked otherwise: a test that fails by chance on one run
# and passes on the next is a second bug. "ci" (the default, and what CI runs) derives every
# example from the test itself; `HYPOTHESIS_PROFILE=dev` explores new examples for a while, and a
# failure it finds prints a blob to reproduce it and is then pinned with `@example`.
hypothesis_settings.register_profile(
    "ci", derandomize=True, max_examples=100, deadline=None, print_blob=True, database=None
)
hypothesis_settings.register_profile("dev", max_examples=1000, deadline=None, print_blob=True)
hypothesis_settings.load_profile(
    "ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "ci")
)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


async def _fresh_postgres_database(admin_url: str) -> str:
    name = f"sastre_test_{next(_database_numbers)}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'sastre.db'}"
    else:
        url = await _fresh_postgres_database(request.getfixturevalue("postgres_admin_url"))
    await migrate(url)
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> SessionMaker:
    return sessionmaker_for(engine)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return load_settings(
        _env_file=None, database_url=database_url, secret_key="test-secret-key-0123456789"
    )
