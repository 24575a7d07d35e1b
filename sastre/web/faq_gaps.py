"""GET /api/faq/gaps: what customers asked that the bot could not answer, grouped by similarity,
most frequent first, with the agents' eventual answers, so that the KB's owners turn the top
gaps into entries (or new variants of the entry suggested beside them).

Query parameters, all optional:

    since     an ISO date or date-time (a date is midnight UTC; default: 30 days ago)
    language  es or en: only messages read in that language
    channel   sms, email, telegram, webchat
    limit     groups per page, 1-200 (default 50)
    cursor    the previous page's `next_cursor`

Needs faq:write (admins and supervisors), the permission to act on what it shows: the texts are
customers' own words. What counts as a gap: `dialog.gaps`; how much is read: `dialog.gaps_store`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web

from channels.base import ChannelName
from dialog.faq import LANGUAGES, MAX_ANSWER
from dialog.gaps import AgentAnswer, GapGroup, group_gaps, suggest_entries
from dialog.gaps_store import read_gaps
from sastre.appkeys import READER, SETTINGS
from sastre.auth import Permission
from sastre.web.auth import require
from sastre.web.errors import ApiError
from sastre.web.faq import FAQ_CATALOGUE
from sastre.web.paging import read_cursor, whole_number, write_cursor

__all__ = ["routes"]

routes = web.RouteTableDef()
DEFAULT_DAYS: Final = 30
LIST_LIMIT: Final = 200
LIST_DEFAULT: Final = 50
# Channels customers write on (voice is our call-back, never a customer's message).
CHANNELS: Final = tuple(c.value for c in ChannelName if c is not ChannelName.VOICE)

Order = tuple[int, datetime, int]


def _invalid(field: str, reason: str) -> ApiError:
    return ApiError(400, "invalid query", [{"field": field, "reason": reason}])


def _since(request: web.Request, now: datetime) -> datetime:
    raw = request.query.get("since")
    if raw is None:
        return now - timedelta(days=DEFAULT_DAYS)
    try:
        when = datetime.fromisoformat(raw)  # a date alone is its midnight
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _invalid("since", "an ISO date (2026-11-01) or date-time") from None


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is not None and raw not in allowed:
        raise _invalid(name, f"one of {', '.join(allowed)}")
    return raw


def _limit(request: web.Request) -> int:
    number = whole_number(request.query.get("limit", str(LIST_DEFAULT)), below=LIST_LIMIT + 1)
    if number is None or number < 1:
        raise _invalid("limit", f"a whole number from 1 to {LIST_LIMIT}")
    return number


def _write_cursor(group: GapGroup) -> str:
    """Where a page ends, in the groups' order: (count, last seen, last message id)."""
    return f"{group.count}.{write_cursor(group.last_seen, group.last_message_id)}"


def _cursor(request: web.Request) -> Order | None:
    raw = request.query.get("cursor")
    if raw is None:
        return None
    count, _, rest = raw.partition(".")
    after = read_cursor(rest) if count.isascii() and count.isdecimal() else None
    if after is None or not 0 < len(count) < 10:
        raise _invalid("cursor", "not a cursor this list gave (next_cursor)")
    return int(count), after[0], after[1]


def _answer_view(answer: AgentAnswer) -> dict[str, Any]:
    return {
        "message_id": answer.message_id,
        "text": answer.text[:MAX_ANSWER],
        "author": answer.author,
        "at": answer.at.isoformat(),
    }


def _group_view(group: GapGroup) -> dict[str, Any]:
    suggestion = group.suggestion
    return {
        "text": group.text,
        "count": group.count,
        "languages": dict(group.languages),
        "outcomes": dict(group.outcomes),
        "chosen": dict(group.chosen),
        "first_seen": group.first_seen.isoformat(),
        "last_seen": group.last_seen.isoformat(),
        "latest_message_id": group.last_message_id,
        "examples": list(group.examples),
        "answers": [_answer_view(a) for a in group.answers],
        "suggested_entry": None
        if suggestion is None
        else {
            "id": suggestion.entry_id,
            "score": suggestion.score,
            "confident": suggestion.confident,
            "matched_question": suggestion.question,
        },
    }


@routes.get("/api/faq/gaps")
async def list_gaps(request: web.Request) -> web.Response:
    require(request, Permission.FAQ_WRITE)
    now = datetime.now(UTC)
    since = _since(request, now)
    language = _choice(request, "language", LANGUAGES)
    channel = _choice(request, "channel", CHANNELS)
    limit, after = _limit(request), _cursor(request)
    async with request.app[READER]() as session:
        scan = await read_gaps(
            session,
            since=since,
            channel=channel,
            language=language,
            default_language=request.app[SETTINGS].default_language,
        )
    # Up to a second of CPU for the largest read: off the event loop, which serves webhooks.
    groups = await asyncio.to_thread(group_gaps, scan.gaps)
    if after is not None:
        groups = [g for g in groups if g.order < after]
    page, more = groups[:limit], len(groups) > limit
    index = await request.app[FAQ_CATALOGUE].index(request.app[READER])
    page = suggest_entries(page, index)
    return web.json_response(
        {
            "since": since.isoformat(),
            "language": language,
            "channel": channel,
            "messages": len(scan.gaps),
            "complete": scan.complete,
            "groups": [_group_view(g) for g in page],
            "next_cursor": _write_cursor(page[-1]) if more else None,
        },
        headers={"Cache-Control": "no-store"},
    )
