"""Typed application state: every shared resource under one `web.AppKey`."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.metrics import Metrics

__all__ = ["ENGINE", "METRICS", "REDIS", "SESSIONMAKER", "SETTINGS"]

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONMAKER = web.AppKey("sessionmaker", SessionMaker)
REDIS: web.AppKey[Redis | None] = web.AppKey("redis")
METRICS = web.AppKey("metrics", Metrics)
