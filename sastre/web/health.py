"""Liveness and metrics for operators: GET /healthz and GET /metrics."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from sqlalchemy import text

from sastre.appkeys import ENGINE, METRICS, REDIS
from sastre.metrics import render

__all__ = ["routes"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
CHECK_TIMEOUT = 2.0


async def _database_ok(request: web.Request) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT), request.app[ENGINE].connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as e:  # any failure means "not ok"; the reason goes to the log
        log.warning("health check: database unreachable: %s", e)
        return False
    return True


async def _redis_state(request: web.Request) -> str:
    redis = request.app[REDIS]
    if redis is None:
        return "disabled"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await redis.ping()
    except Exception as e:
        log.warning("health check: redis unreachable: %s", e)
        return "error"
    return "ok"


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    database_ok, redis = await asyncio.gather(_database_ok(request), _redis_state(request))
    healthy = database_ok and redis != "error"
    body = {
        "status": "ok" if healthy else "error",
        "database": "ok" if database_ok else "error",
        "redis": redis,
    }
    return web.json_response(body, status=200 if healthy else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return render(request.app[METRICS])
