"""Application assembly: every resource is acquired and released in one place (cleanup_ctx)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis

from sastre.appkeys import ENGINE, METRICS, REDIS, SESSIONMAKER, SETTINGS
from sastre.config import Settings
from sastre.db import create_engine, sessionmaker_for
from sastre.metrics import Metrics, metrics_middleware
from sastre.web import consent, console, customers, health, public
from sastre.web.auth import auth_middleware
from sastre.web.errors import error_middleware

__all__ = ["create_app"]

log = logging.getLogger(__name__)


async def _database(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[SETTINGS].database_url)
    app[ENGINE] = engine
    app[SESSIONMAKER] = sessionmaker_for(engine)
    yield
    await engine.dispose()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    url = app[SETTINGS].redis_url
    if url is None:
        app[REDIS] = None
        yield
        return
    redis = Redis.from_url(url)
    app[REDIS] = redis
    yield
    await redis.aclose()


def create_app(settings: Settings) -> web.Application:
    """The whole service; nothing connects until the app starts (cleanup contexts)."""
    metrics = Metrics()
    app = web.Application(
        middlewares=[metrics_middleware(metrics), error_middleware, auth_middleware],
        client_max_size=1024**2,
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app.cleanup_ctx.extend([_database, _redis])
    app.add_routes(health.routes)
    app.add_routes(customers.routes)
    app.add_routes(consent.routes)
    app.add_routes(public.routes)
    app.add_routes(console.routes)
    return app
