"""The suite's throwaway servers cannot lose a race for a port to another process."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy.engine import make_url

from tests.support import servers


@pytest.mark.skipif(
    bool(os.environ.get("SASTRE_TEST_REDIS_URL")), reason="a Redis of your own is used"
)
def test_redis_whose_port_was_taken_meanwhile_starts_again_on_a_fresh_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another process takes the port between the moment it was found free and Redis's start.
    with socket.create_server(("127.0.0.1", 0)) as other:
        taken = other.getsockname()[1]
        offered = iter([taken])
        fresh = servers._unused_port
        monkeypatch.setattr(servers, "_unused_port", lambda: next(offered, None) or fresh())
        with servers.redis_server() as url:
            assert f":{taken}/" not in url
            client = Redis.from_url(url, socket_timeout=30)
            try:
                assert client.ping()  # ours answers, not the other listener
            finally:
                client.close()


@pytest.mark.postgres
@pytest.mark.skipif(
    bool(os.environ.get("SASTRE_TEST_POSTGRES_URL")), reason="a PostgreSQL of your own is used"
)
def test_postgresql_listens_on_no_port_at_all(postgres_admin_url: str) -> None:
    # Its socket is a file in a directory of its own: nothing to race for.
    url = make_url(postgres_admin_url)
    assert (url.host, url.port) == (None, None)
    assert Path(str(url.query["host"]), ".s.PGSQL.5432").is_socket()
