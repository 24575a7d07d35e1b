"""Operators' endpoints: /healthz and /metrics."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpClient

from sastre.app import create_app
from sastre.config import Settings
from sastre.web import health
from tests.sastre.conftest import Client


async def test_healthz_reports_database_and_no_redis(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "database": "ok", "redis": "disabled"}


async def test_healthz_checks_redis_when_configured(
    aiohttp_client: AiohttpClient, settings: Settings, redis_url: str
) -> None:
    client = await aiohttp_client(create_app(settings.model_copy(update={"redis_url": redis_url})))
    response = await client.get("/healthz")
    assert (await response.json())["redis"] == "ok"


async def test_healthz_is_503_when_the_database_is_unreachable(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    broken = settings.model_copy(
        update={"database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/none"}
    )
    client = await aiohttp_client(create_app(broken))
    response = await client.get("/healthz")
    assert response.status == 503
    body = await response.json()
    assert body["database"] == "error"
    assert body["detail"] == {"database": "unreachable"}


async def test_metrics_are_prometheus_text_by_route(client: Client) -> None:
    await client.get("/healthz")
    await client.get("/api/customers/1")  # 401, still counted
    response = await client.get("/metrics")
    text = await response.text()
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert 'sastre_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'route="/api/customers/{customer_id}",status="401"' in text


async def test_healthz_answers_503_within_its_timeout_when_the_database_hangs(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = asyncio.Event()

    async def hang(_app: web.Application) -> None:
        await answer.wait()

    monkeypatch.setattr(health, "_ping_database", hang)
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 0.01)
    response = await client.get("/healthz")
    assert response.status == 503
    assert await response.json() == {
        "status": "error",
        "database": "error",
        "redis": "disabled",
        "detail": {"database": "no answer within 0.01 s"},
    }
    answer.set()  # the check that outlived its answer ends now
