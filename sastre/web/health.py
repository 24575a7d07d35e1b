"""Liveness and metrics for operators: GET /healthz and GET /metrics.

/healthz answers within its own timeout whatever the database does: each check runs as a task
that is waited for at most `CHECK_TIMEOUT`, not cancelled (a SQLite call blocked in the driver's
thread cannot be interrupted, and cancelling it would only make the answer wait for it). The
database is checked with a reader, which never queues behind a writer's lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web
from sqlalchemy import text

from crm_core.sqltypes import utcnow
from sastre.appkeys import METRICS, READER, REDIS
from sastre.metrics import render
from sastre.outbox_gauges import outbox_backlog
from sastre.serve_worker import SERVE_WORKER

__all__ = ["CHECK_TIMEOUT", "routes"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
CHECK_TIMEOUT: Final = 2.0
# Checks that outlived their answer: kept referenced until they end, then logged.
_outliving: set[asyncio.Future[Any]] = set()


async def _ping_database(app: web.Application) -> None:
    async with app[READER]() as session:
        await session.execute(text("SELECT 1"))


async def _ping_redis(app: web.Application) -> None:
    redis = app[REDIS]
    assert redis is not None
    await redis.ping()


def _settle(name: str) -> Callable[[asyncio.Future[Any]], None]:
    def settle(task: asyncio.Future[Any]) -> None:
        _outliving.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("health check: %s unreachable: %s", name, task.exception())

    return settle


async def _problem(name: str, check: Awaitable[None]) -> str | None:
    """None if `check` passed within CHECK_TIMEOUT, else the reason (the details go to the log:
    /healthz is public)."""
    task = asyncio.ensure_future(check)
    _outliving.add(task)
    task.add_done_callback(_settle(name))
    timeout = CHECK_TIMEOUT
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        log.warning("health check: %s gave no answer within %g s", name, timeout)
        return f"no answer within {timeout:g} s"
    if task.exception() is not None:
        return "unreachable"
    return None


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    app = request.app
    checks = {"database": _problem("database", _ping_database(app))}
    if app[REDIS] is not None:
        checks["redis"] = _problem("redis", _ping_redis(app))
    problems = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
    failed = {name: reason for name, reason in problems.items() if reason is not None}
    # The outbox worker serve runs beside it: while none runs nothing is sent (a 503 lets a
    # load balancer or an orchestrator see it). Absent when this process runs no worker.
    worker = app[SERVE_WORKER]
    if worker is not None and worker.state != "ok":
        failed["worker"] = f"the outbox worker {worker.last_exit or 'is not running'}"
    body: dict[str, Any] = {
        "status": "error" if failed else "ok",
        "database": "error" if "database" in failed else "ok",
        "redis": "disabled" if "redis" not in problems else "error" if "redis" in failed else "ok",
    }
    if worker is not None:
        body["worker"] = worker.state
    if failed:
        body["detail"] = failed
    return web.json_response(body, status=503 if failed else 200)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    figures = request.app[METRICS]
    now = utcnow()
    async with request.app[READER]() as session:
        backlog = await outbox_backlog(session, now)
        sends = await figures.attempts.counts(session, now)
    figures.outbox.set(backlog, now)
    for (channel, outcome), count in sends.items():
        figures.outbox_sends.labels(channel, outcome).set(count)
    return render(figures)
