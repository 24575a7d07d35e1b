"""The staff FAQ API: read and edit the knowledge base, and try questions against it.

Every role that may read customers may read the KB and test it (POST /api/faq/match shows what
the bot would answer and how sure it is); changing it needs the write permission. Reading and
matching go through reader sessions: a long write (an import) never delays them. A change is
live at once in this process (the catalogue is invalidated) and within a few seconds in the
others (see dialog.faq_store.FaqCatalogue).
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from dialog.faq import LANGUAGES, MAX_ANSWER, FaqMatch, build_entry, entry_to_dict
from dialog.faq_store import FaqCatalogue, delete_entry, get_entry, load_entries, save_entry
from sastre.appkeys import READER, SESSIONMAKER, SETTINGS
from sastre.auth import Permission
from sastre.config import Settings
from sastre.web.auth import require
from sastre.web.customers import validated
from sastre.web.errors import ApiError, read_json_object

__all__ = ["FAQ_CATALOGUE", "routes"]

routes = web.RouteTableDef()
# The process's FAQ index, shared with the bot so that an edit here is what it answers next.
FAQ_CATALOGUE = web.AppKey("faq_catalogue", FaqCatalogue)
# Who may change the KB. customers:write for now; a dedicated faq:write (admin, supervisor)
# keeps agents, who need customers:write for their daily work, from editing what the bot says.
WRITE = Permission.FAQ_WRITE


class FaqEntryIn(BaseModel):
    """PUT /api/faq/{id}: the whole entry; what is left out is gone after the replace."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None  # optional; when given it must be the id in the path
    questions: dict[str, list[str]]
    answers: dict[str, str]
    tags: list[str] = Field(default_factory=list)


class MatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_ANSWER)
    # default: the text's language as the bot reads it (a tie: the service's default language)
    language: Literal["es", "en"] | None = None
    k: StrictInt = Field(default=3, ge=1, le=10)


def _detected_language(text: str, settings: Settings) -> str:
    """The language the bot would answer `text` in: what staff try is what customers get."""
    # Imported here: the understanding's libraries are slow to load and only matching needs them
    # (the bot has loaded them already when it is the embedded one).
    from dialog.nlu import detect_language

    language = detect_language(text, hint=settings.default_language)
    return language if language in LANGUAGES else LANGUAGES[0]


def _entry_id(request: web.Request) -> str:
    return request.match_info["entry_id"]


def _not_found(entry_id: str) -> ApiError:
    return ApiError(404, "no such FAQ entry", {"id": entry_id})


def _match_view(match: FaqMatch) -> dict[str, Any]:
    return {
        "id": match.entry.id,
        "score": match.score,
        "confident": match.confident,
        "answer": match.answer,
        "matched_question": match.question,
        "tags": list(match.entry.tags),
    }


@routes.get("/api/faq")
async def list_entries(request: web.Request) -> web.Response:
    require(request, Permission.CUSTOMERS_READ)
    tag = request.query.get("tag")
    async with request.app[READER]() as session:
        entries = await load_entries(session)
    shown = [entry_to_dict(e) for e in entries if tag is None or tag.lower() in e.tags]
    return web.json_response({"count": len(shown), "entries": shown})


@routes.get("/api/faq/{entry_id}")
async def show_entry(request: web.Request) -> web.Response:
    require(request, Permission.CUSTOMERS_READ)
    entry_id = _entry_id(request)
    async with request.app[READER]() as session:
        entry = await get_entry(session, entry_id)
    if entry is None:
        raise _not_found(entry_id)
    return web.json_response(entry_to_dict(entry))


@routes.put("/api/faq/{entry_id}")
async def put_entry(request: web.Request) -> web.Response:
    staff = require(request, WRITE)
    entry_id = _entry_id(request)
    body = validated(FaqEntryIn, await read_json_object(request))
    if body.id is not None and body.id != entry_id:
        raise ApiError(
            400,
            "invalid FAQ entry",
            [{"field": "id", "reason": f"is {body.id!r} but the path says {entry_id!r}"}],
        )
    entry = build_entry(entry_id, body.questions, body.answers, body.tags)
    async with request.app[SESSIONMAKER].begin() as session:
        created = await save_entry(session, entry, actor=staff.actor)
    request.app[FAQ_CATALOGUE].invalidate()
    return web.json_response(entry_to_dict(entry), status=201 if created else 200)


@routes.delete("/api/faq/{entry_id}")
async def remove_entry(request: web.Request) -> web.Response:
    staff = require(request, WRITE)
    entry_id = _entry_id(request)
    async with request.app[SESSIONMAKER].begin() as session:
        deleted = await delete_entry(session, entry_id, actor=staff.actor)
    if not deleted:
        raise _not_found(entry_id)
    request.app[FAQ_CATALOGUE].invalidate()
    return web.Response(status=204)


@routes.post("/api/faq/match")
async def try_match(request: web.Request) -> web.Response:
    """What the bot would answer to `text`: the best entries with their scores, best first."""
    require(request, Permission.CUSTOMERS_READ)
    body = validated(MatchIn, await read_json_object(request))
    language = body.language or _detected_language(body.text, request.app[SETTINGS])
    catalogue = request.app[FAQ_CATALOGUE]
    # A read: the index is refreshed through a reader, which never waits for a writer's lock.
    index = await catalogue.index(request.app[READER])
    return web.json_response(
        {
            "language": language,
            "threshold": index.threshold,
            "version": catalogue.version,
            "matches": [_match_view(m) for m in index.top(body.text, language, k=body.k)],
        }
    )
