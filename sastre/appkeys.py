"""Typed application state: every shared resource under one `web.AppKey`."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from dialog.inbound import InboundProcessor
from dialog.turns import Bot
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.metrics import Metrics
from sastre.web.chat_limits import ChatLimits

__all__ = [
    "BRAIN",
    "CHAT_LIMITS",
    "ENGINE",
    "INBOUND",
    "METRICS",
    "READER",
    "REDIS",
    "SESSIONMAKER",
    "SETTINGS",
]

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
# Units of work that write take SESSIONMAKER (the write lock on SQLite); reads take READER,
# which never waits for a writer (sastre.db.reader_for).
SESSIONMAKER = web.AppKey("sessionmaker", SessionMaker)
READER = web.AppKey("reader", SessionMaker)
REDIS: web.AppKey[Redis | None] = web.AppKey("redis")
METRICS = web.AppKey("metrics", Metrics)
# The bot: set by create_app when given one (tests), otherwise built at start-up.
BRAIN: web.AppKey[Bot | None] = web.AppKey("brain")
INBOUND = web.AppKey("inbound", InboundProcessor)
# New web chat visitors and leads per client address (set up by sastre.web.chat.abuse_limits).
CHAT_LIMITS = web.AppKey("chat_limits", ChatLimits)
