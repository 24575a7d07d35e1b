"""The outbox worker in the web application's lifecycle (`sastre serve`, `sastre demo`): started
once the app starts, stopped when it shuts down, its state read by /healthz."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from sastre.worker.supervisor import WorkerSupervisor

__all__ = ["SERVE_WORKER", "serve_worker"]

# None: this process runs no worker (SASTRE_SERVE_WORKER=0, or `sastre worker` runs apart).
SERVE_WORKER: web.AppKey[WorkerSupervisor | None] = web.AppKey("serve_worker")


async def serve_worker(app: web.Application) -> AsyncIterator[None]:
    supervisor = app[SERVE_WORKER]
    if supervisor is None:
        yield
        return
    await supervisor.start()
    try:
        yield
    finally:
        await supervisor.stop()
