"""The web chat's WebSocket through the whole app: history, replies, dedupe, limits, identity.

The bot is a small fake (the real one has its own tests, and the browser test uses it)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import ClientWSTimeout, WSMsgType, WSServerHandshakeError
from aiohttp.client import ClientWebSocketResponse
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import override

from channels.base import InboundMessage
from channels.webchat import MAX_TEXT, VISITOR_COOKIE, identity_hash
from crm_core.customers import upsert_customer
from crm_core.models import Identity, IdentityKind
from crm_core.records import parse_customer
from dialog.models import Conversation, Message
from dialog.turns import BotTurn, InboundResult, Turn
from sastre.app import create_app
from sastre.appkeys import INBOUND
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.web import chat
from tests.sastre.conftest import Client, ClientFactory
from tests.support.silent_bot import SilentBot
from wording import translate

SITE_SECRET = "site-secret-for-tests"
Frame = dict[str, Any]


class FakeBrain:
    """Answers "echo: <text>"; hands off when asked for a "human"."""

    def __init__(self) -> None:
        self.turns: list[Turn] = []

    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn:
        self.turns.append(turn)
        if turn.text == "human":
            return BotTurn(
                ["Passing you to a colleague."], handoff="customer_asked", intent="human"
            )
        return BotTurn([f"echo: {turn.text}"], intent="faq", confidence=0.9)


def with_secret(settings: Settings, **changes: Any) -> Settings:
    # Until Settings has the field, model_copy sets the attribute all the same.
    return settings.model_copy(
        update={"webchat_identity_secret": SecretStr(SITE_SECRET), **changes}
    )


@pytest.fixture
def brain() -> FakeBrain:
    return FakeBrain()


@pytest.fixture
def make_client(aiohttp_client: ClientFactory, brain: FakeBrain) -> Callable[[Settings], Any]:
    async def make(settings: Settings) -> Client:
        app = create_app(settings, brain=brain)
        # Until create_app registers the chat itself; then this does nothing.
        if not any(r.resource and r.resource.canonical == "/ws/chat" for r in app.router.routes()):
            app.add_routes(chat.routes)
        return await aiohttp_client(app)

    return make


@pytest.fixture
async def client(make_client: Callable[[Settings], Any], settings: Settings) -> Client:
    made: Client = await make_client(with_secret(settings))
    return made


async def receive(ws: ClientWebSocketResponse) -> Frame:
    message = await ws.receive(timeout=5)
    assert message.type is WSMsgType.TEXT, message
    frame: Frame = json.loads(message.data)
    return frame


async def connect(client: Client, **params: str) -> tuple[ClientWebSocketResponse, Frame]:
    """A socket and its history frame (after any error frames, which are returned too)."""
    ws = await client.ws_connect("/ws/chat", params=params)
    frame = await receive(ws)
    return ws, frame


async def say(ws: ClientWebSocketResponse, client_id: str, text: str) -> None:
    await ws.send_json({"type": "message", "id": client_id, "text": text})


async def count(sessionmaker: SessionMaker, model: type, *where: object) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)))  # type: ignore[arg-type]


async def test_a_message_is_echoed_and_answered(client: Client, brain: FakeBrain) -> None:
    ws, history = await connect(client)
    assert history == {"type": "history", "messages": []}
    await say(ws, "c1", "hola <b>tienda</b>")
    echo = await receive(ws)
    assert echo["type"] == "message"
    assert (echo["id"], echo["author"], echo["text"]) == ("c1", "customer", "hola <b>tienda</b>")
    reply = await receive(ws)
    assert (reply["author"], reply["text"]) == ("bot", "echo: hola <b>tienda</b>")
    assert reply["id"].startswith("m")
    assert reply["at"]
    await say(ws, "c2", "y otra")
    assert (await receive(ws))["id"] == "c2"
    assert (await receive(ws))["text"] == "echo: y otra"
    await ws.close()
    assert len(brain.turns) == 2


async def test_the_cookie_is_signed_http_only_and_lax(client: Client) -> None:
    ws, _ = await connect(client)
    await ws.close()
    (morsel,) = [m for m in client.session.cookie_jar if m.key == VISITOR_COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/ws/chat"
    assert not morsel["secure"]
    visitor = morsel.value.split(".")[0]
    assert len(visitor) >= 22


async def test_the_cookie_is_secure_behind_https(
    make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    client: Client = await make_client(with_secret(settings, public_url="https://shop.example"))
    ws = await client.ws_connect("/ws/chat")
    await ws.close()
    (morsel,) = [m for m in client.session.cookie_jar if m.key == VISITOR_COOKIE]
    assert morsel["secure"] is True
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"


async def test_reconnecting_resumes_the_conversation_with_its_history(client: Client) -> None:
    ws, _ = await connect(client)
    await say(ws, "c1", "first")
    await receive(ws)
    await receive(ws)
    await ws.close()

    ws, history = await connect(client)
    assert history["type"] == "history"
    assert [(m["id"], m["author"], m["text"]) for m in history["messages"]] == [
        ("c1", "customer", "first"),
        (history["messages"][1]["id"], "bot", "echo: first"),
    ]
    await say(ws, "c2", "second")
    await receive(ws)
    assert (await receive(ws))["text"] == "echo: second"
    await ws.close()

    ws, history = await connect(client)
    assert [m["text"] for m in history["messages"]] == [
        "first",
        "echo: first",
        "second",
        "echo: second",
    ]
    await ws.close()


async def test_another_visitor_or_a_forged_cookie_sees_nothing(client: Client) -> None:
    ws, _ = await connect(client)
    await say(ws, "c1", "my secret question")
    await receive(ws)
    await receive(ws)
    await ws.close()
    (morsel,) = [m for m in client.session.cookie_jar if m.key == VISITOR_COOKIE]
    visitor = morsel.value.split(".")[0]

    client.session.cookie_jar.clear()
    ws, history = await connect(client)
    assert history["messages"] == []
    await ws.close()

    client.session.cookie_jar.clear()
    for forged in (visitor, f"{visitor}.not-the-signature"):
        client.session.cookie_jar.update_cookies({VISITOR_COOKIE: forged}, client.make_url("/"))
        ws, history = await connect(client)
        assert history["messages"] == [], forged
        await ws.close()


async def test_a_message_sent_again_after_a_reconnect_is_answered_once(
    client: Client, brain: FakeBrain, sessionmaker: SessionMaker
) -> None:
    ws, _ = await connect(client)
    await say(ws, "dup", "where is my order?")
    assert (await receive(ws))["id"] == "dup"
    assert (await receive(ws))["text"] == "echo: where is my order?"
    await ws.close()

    ws, _ = await connect(client)
    await say(ws, "dup", "where is my order?")  # the client was not sure it arrived
    ack = await receive(ws)
    assert (ack["id"], ack["author"]) == ("dup", "customer")
    await say(ws, "next", "thanks")
    # No second answer to "dup" in between: the next frames are about "next".
    assert (await receive(ws))["id"] == "next"
    assert (await receive(ws))["text"] == "echo: thanks"
    await ws.close()
    assert [t.text for t in brain.turns] == ["where is my order?", "thanks"]
    assert await count(sessionmaker, Message) == 4


async def test_another_text_under_a_used_id_is_refused_not_echoed(
    client: Client, brain: FakeBrain, sessionmaker: SessionMaker
) -> None:
    ws, _ = await connect(client)
    await say(ws, "q1", "where is my order?")
    assert (await receive(ws))["id"] == "q1"
    assert (await receive(ws))["text"] == "echo: where is my order?"
    await say(ws, "q1", "and my refund?")  # a client's bug: the id of a message already sent
    refused = await receive(ws)
    assert (refused["type"], refused["code"], refused["id"]) == ("error", "id_reused", "q1")
    assert refused["reason"] == translate("en", "webchat.id_reused")
    await ws.close()
    assert [t.text for t in brain.turns] == ["where is my order?"]
    assert await count(sessionmaker, Message) == 2


class GatedBrain(FakeBrain):
    """Holds its answer to "slow question" until let go."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.go = asyncio.Event()

    @override
    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn:
        if turn.text == "slow question":
            self.entered.set()
            await self.go.wait()
        return await super().respond(session, turn)


async def test_a_message_sent_again_while_it_is_answered_gets_the_answer_on_the_new_socket(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    """The visitor's connection drops while their message is being answered; the widget
    reconnects and sends it again (the history does not hold it yet). The resend waits for the
    first delivery and brings its answer to the socket the visitor is on now."""
    brain = GatedBrain()
    app = create_app(with_secret(settings), brain=brain)
    client = await aiohttp_client(app)
    processor = app[INBOUND]
    resent = asyncio.Event()
    handle = processor.handle

    async def watching(message: InboundMessage) -> InboundResult:
        answer = asyncio.ensure_future(handle(message))
        await asyncio.sleep(0)  # in: waiting for the first delivery
        if message.provider_id.endswith(":q1"):
            resent.set()
        return await answer

    # The server answers the close only once the message is answered: not waited for.
    ws = await client.ws_connect("/ws/chat", timeout=ClientWSTimeout(ws_close=0.01))
    await receive(ws)  # its history
    await say(ws, "q1", "slow question")
    await brain.entered.wait()
    await ws.close()  # the connection drops
    processor.handle = watching  # type: ignore[method-assign]
    ws, _ = await connect(client)
    await say(ws, "q1", "slow question")
    await resent.wait()
    brain.go.set()
    frames = [await receive(ws), await receive(ws)]
    assert [(f["author"], f["text"]) for f in frames] == [
        ("customer", "slow question"),
        ("bot", "echo: slow question"),
    ]
    await ws.close()
    assert [t.text for t in brain.turns] == ["slow question"]


async def test_an_over_long_message_is_refused_with_a_reason(
    client: Client, brain: FakeBrain, sessionmaker: SessionMaker
) -> None:
    ws, _ = await connect(client)
    await say(ws, "long", "x" * 4001)
    error = await receive(ws)
    assert error["type"] == "error"
    assert (error["id"], error["code"]) == ("long", "too_long")
    assert "too long (4,001 characters)" in error["reason"]
    assert "4,000" in error["reason"]
    await say(ws, "ok", "x" * 4000)  # the limit itself is fine
    assert (await receive(ws))["id"] == "ok"
    assert (await receive(ws))["author"] == "bot"
    await ws.close()
    assert [len(t.text) for t in brain.turns] == [4000]
    assert await count(sessionmaker, Message, Message.provider_id.like("%:long")) == 0


async def test_bad_frames_get_an_error_and_the_chat_goes_on(client: Client) -> None:
    ws, _ = await connect(client)
    await ws.send_str("{nope")
    assert (await receive(ws))["reason"] == "the frame is not JSON"
    await ws.send_json({"type": "typing"})
    assert (await receive(ws))["reason"] == "unknown frame type: 'typing'"
    await say(ws, "e", "")
    assert (await receive(ws))["reason"].startswith("the message is empty")
    await ws.send_bytes(b"\x00")
    assert (await receive(ws))["reason"] == "send JSON text frames"
    await say(ws, "fine", "still here")
    assert (await receive(ws))["id"] == "fine"
    await ws.close()


async def test_a_page_from_another_site_may_not_open_the_chat(client: Client) -> None:
    response = await client.get("/ws/chat", headers={"Origin": "https://evil.example"})
    assert response.status == 403
    body = await response.json()
    assert body["error"] == "origin not allowed"
    assert "SASTRE_WEBCHAT_ORIGINS" in body["detail"]
    own = f"http://{client.server.host}:{client.server.port}"
    ws = await client.ws_connect("/ws/chat", headers={"Origin": own})
    assert (await receive(ws))["type"] == "history"
    await ws.close()


async def test_a_listed_site_may_embed_the_chat(
    make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    client: Client = await make_client(
        with_secret(settings, webchat_origins="https://shop.example, https://tienda.example")
    )
    ws = await client.ws_connect("/ws/chat", headers={"Origin": "https://tienda.example"})
    assert (await receive(ws))["type"] == "history"
    await ws.close()
    refused = await client.get("/ws/chat", headers={"Origin": "https://other.example"})
    assert refused.status == 403


async def test_a_flood_of_messages_is_told_to_slow_down(
    client: Client, brain: FakeBrain, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat, "time", SimpleNamespace(monotonic=lambda: 1000.0))  # no refill
    ws, _ = await connect(client)
    for n in range(12):
        await say(ws, f"f{n}", f"spam {n}")
    refused = echoed = 0
    while refused + echoed < 12:
        frame = await receive(ws)
        if frame["type"] == "error":
            assert frame["reason"].startswith("too many messages")
            refused += 1
        elif frame["author"] == "customer":
            echoed += 1
    assert refused == 4  # a burst of 8, then one a second: the clock stopped, none refilled
    await ws.close()
    assert len(brain.turns) == echoed


async def test_more_sockets_buy_a_visitor_no_more_messages(
    client: Client, brain: FakeBrain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One bucket for all of a visitor's sockets: three sockets under one cookie share one
    burst of eight (the clock stopped, so nothing refills it)."""
    monkeypatch.setattr(chat, "time", SimpleNamespace(monotonic=lambda: 1000.0))
    first, _ = await connect(client)
    await say(first, "hello", "hello")  # the visitor becomes a customer: the cookie is theirs
    assert (await receive(first))["author"] == "customer"
    assert (await receive(first))["author"] == "bot"
    sockets = [first, (await connect(client))[0], (await connect(client))[0]]
    refused = 0
    for n, ws in enumerate(sockets):
        for m in range(8):
            await say(ws, f"s{n}-{m}", f"spam {n}-{m}")
        for _ in range(8):
            frame = await receive(ws)
            if frame["type"] == "error":
                refused += 1
            else:  # an echo and its answer
                assert (await receive(ws))["author"] == "bot"
    assert refused == 24 - 7  # one of the eight went to "hello"
    assert len(brain.turns) == 8
    for ws in sockets:
        await ws.close()


async def test_a_hand_off_is_announced_and_shown_again_on_reconnect(client: Client) -> None:
    ws, _ = await connect(client, lang="es-ES")
    await say(ws, "h", "human")
    assert (await receive(ws))["id"] == "h"
    assert (await receive(ws))["text"] == "Passing you to a colleague."
    handoff = await receive(ws)
    assert handoff == {"type": "handoff", "text": translate("es", "webchat.handoff")}
    await say(ws, "after", "hello?")
    assert (await receive(ws))["id"] == "after"  # stored for the agent; the bot stays silent
    await ws.close()

    ws, history = await connect(client, lang="en")
    assert [m["text"] for m in history["messages"]][-1] == "hello?"
    assert await receive(ws) == {"type": "handoff", "text": translate("en", "webchat.handoff")}
    await ws.close()


async def test_the_browser_language_reaches_the_bot(client: Client, brain: FakeBrain) -> None:
    ws = await client.ws_connect("/ws/chat", headers={"Accept-Language": "es-ES,es;q=0.9"})
    await receive(ws)
    await say(ws, "l", "hola")
    await receive(ws)
    await receive(ws)
    await ws.close()
    assert brain.turns[0].language == "es"


async def add_customer(sessionmaker: SessionMaker, external_id: str) -> int:
    async with sessionmaker.begin() as session:
        customer, _ = await upsert_customer(
            session, parse_customer({"external_id": external_id, "name": "Ana"}, "ES")
        )
        return customer.id


async def webchat_owner(sessionmaker: SessionMaker, client: Client) -> tuple[int, bool]:
    (morsel,) = [m for m in client.session.cookie_jar if m.key == VISITOR_COOKIE]
    async with sessionmaker() as session:
        identity = await session.get(
            Identity, (IdentityKind.WEBCHAT.value, morsel.value.split(".")[0])
        )
        assert identity is not None
        return identity.customer_id, identity.verified


async def test_a_verified_user_chats_as_the_known_customer(
    client: Client, sessionmaker: SessionMaker
) -> None:
    ana = await add_customer(sessionmaker, "C-1")
    # First anonymous: this browser's visitor id becomes a lead.
    ws, _ = await connect(client)
    await say(ws, "anon", "just looking")
    await receive(ws)
    await receive(ws)
    await ws.close()
    lead, verified = await webchat_owner(sessionmaker, client)
    assert lead != ana
    assert not verified

    proof = {"user_id": "C-1", "user_hash": identity_hash(SITE_SECRET.encode(), "C-1")}
    ws, history = await connect(client, **proof)
    assert history == {"type": "history", "messages": []}  # a new visitor id, tied to Ana
    await say(ws, "v1", "where is my order?")
    await receive(ws)
    await receive(ws)
    await ws.close()
    assert await webchat_owner(sessionmaker, client) == (ana, True)
    async with sessionmaker() as session:
        conversation = await session.scalar(
            select(Conversation).where(Conversation.customer_id == ana)
        )
        assert conversation is not None
        assert conversation.channel == "webchat"

    ws, history = await connect(client, **proof)  # signed in again: resumed
    assert [m["text"] for m in history["messages"]] == [
        "where is my order?",
        "echo: where is my order?",
    ]
    await ws.close()

    # Without the proof (signed out, or somebody else at this computer): not Ana's chat.
    ws, history = await connect(client)
    assert history["messages"] == []
    await say(ws, "n1", "hello")
    await receive(ws)
    await receive(ws)
    await ws.close()
    owner, verified = await webchat_owner(sessionmaker, client)
    assert owner != ana
    assert not verified


async def test_an_invalid_hash_is_refused_and_the_chat_stays_anonymous(
    client: Client, sessionmaker: SessionMaker
) -> None:
    ana = await add_customer(sessionmaker, "C-1")
    wrong = {"user_id": "C-1", "user_hash": identity_hash(b"guessed", "C-1")}
    ws, error = await connect(client, **wrong)
    assert error == {
        "type": "error",
        "code": "identity_failed",
        "reason": "identity verification failed: the chat continues anonymously",
    }
    assert (await receive(ws))["type"] == "history"
    await say(ws, "a", "I am Ana, honest")
    assert (await receive(ws))["id"] == "a"
    assert (await receive(ws))["author"] == "bot"
    await ws.close()
    owner, verified = await webchat_owner(sessionmaker, client)
    assert owner != ana
    assert not verified
    assert await count(sessionmaker, Conversation, Conversation.customer_id == ana) == 0

    ws, error = await connect(client, user_id="C-1")
    assert error["reason"] == "identity verification needs both user_id and user_hash"
    await ws.close()


async def test_without_a_site_secret_verification_is_refused(
    make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    client: Client = await make_client(settings)
    if getattr(settings, "webchat_identity_secret", None) is not None:
        pytest.skip("the test settings carry a site secret")
    ws, error = await connect(client, user_id="C-1", user_hash="00" * 32)
    assert error["reason"] == "identity verification is not configured on this server"
    await ws.close()


async def test_the_demo_page_and_widget_are_served_under_a_strict_policy(client: Client) -> None:
    page = await client.get("/chat")
    assert page.status == 200
    assert page.content_type == "text/html"
    html = await page.text()
    assert '<script src="/static/widget.js" defer></script>' in html
    assert "<style" not in html
    assert "style=" not in html
    assert "<script>" not in html
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "require-trusted-types-for 'script'" in policy
    for name in ("widget.js", "widget.css"):
        response = await client.get(f"/static/{name}")
        assert response.status == 200, name
    script = await (await client.get("/static/widget.js")).text()
    assert "textContent" in script
    assert not any(
        sink in script
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write")
    )
    plain = await client.get("/ws/chat")  # not an upgrade
    assert plain.status == 400


# --- identity proof: one string checked and looked up -------------------------------------------


async def test_a_proof_for_another_spelling_of_a_user_id_does_not_open_their_chat(
    client: Client, sessionmaker: SessionMaker
) -> None:
    ana = await add_customer(sessionmaker, "C-1")
    # A valid proof for the site's user "C-1 " (whoever that is), not for "C-1".
    other = {"user_id": "C-1 ", "user_hash": identity_hash(SITE_SECRET.encode(), "C-1 ")}
    ws, error = await connect(client, **other)
    assert error["reason"] == "identity verification failed: the chat continues anonymously"
    await receive(ws)  # the history
    await say(ws, "x", "hello")
    await receive(ws)
    await receive(ws)
    await ws.close()
    owner, verified = await webchat_owner(sessionmaker, client)
    assert (owner == ana, verified) == (False, False)


async def test_a_wrong_proof_does_not_resume_a_verified_chat(
    client: Client, sessionmaker: SessionMaker
) -> None:
    await add_customer(sessionmaker, "C-1")
    proof = {"user_id": "C-1", "user_hash": identity_hash(SITE_SECRET.encode(), "C-1")}
    ws, _ = await connect(client, **proof)
    await say(ws, "v", "my order?")
    await receive(ws)
    await receive(ws)
    await ws.close()
    wrong = {"user_id": "C-1", "user_hash": "00" * 32}
    ws, _ = await connect(client, **wrong)
    history = await receive(ws)
    assert history == {"type": "history", "messages": []}
    await ws.close()


# --- the visitor cookie across sites ------------------------------------------------------------


def test_the_cookie_policy_follows_https_and_other_sites() -> None:
    policy = chat.cookie_policy
    assert policy("https://chat.example", ["https://shop.example"]) == chat.CookiePolicy(
        "None", secure=True
    )
    # Only our own pages: Lax is enough. Plain HTTP: a Secure cookie would be refused.
    assert policy("https://chat.example", []) == chat.CookiePolicy("Lax", secure=True)
    assert policy("http://127.0.0.1:8080", ["http://shop.test"]) == chat.CookiePolicy(
        "Lax", secure=False
    )


async def test_a_widget_on_another_site_gets_a_cross_site_cookie(
    make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    client: Client = await make_client(
        with_secret(
            settings, public_url="https://chat.example", webchat_origins="https://shop.example"
        )
    )
    ws = await client.ws_connect("/ws/chat", headers={"Origin": "https://shop.example"})
    await ws.close()
    (morsel,) = [m for m in client.session.cookie_jar if m.key == VISITOR_COOKIE]
    assert morsel["samesite"] == "None"
    assert morsel["secure"] is True
    assert morsel["httponly"] is True


# --- frames that once crashed the socket --------------------------------------------------------


_MESSAGE = '{"type": "message", "id": "m1", "text": "hi", "extra": '


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("[" * 50_000, "the frame cannot be taken: nested deeper than 64 levels"),
        (_MESSAGE + "NaN}", "the message cannot be taken: extra NaN is not a number JSON allows"),
        (_MESSAGE + "-Infinity}", "the message cannot be taken: extra -Infinity is not a number"),
        (_MESSAGE + "1" + "0" * 5000 + "}", "the message cannot be taken: extra holds a number"),
    ],
    ids=["deep", "nan", "infinity", "huge-number"],
)
async def test_json_sastre_does_not_take_is_refused_with_the_reason_and_the_chat_goes_on(
    client: Client, sessionmaker: SessionMaker, frame: str, reason: str
) -> None:
    """The socket holds a frame to the REST API's limits (sastre.web.json_input)."""
    ws, _ = await connect(client)
    await ws.send_str(frame)
    error = await receive(ws)
    assert error["type"] == "error"
    assert error["reason"].startswith(reason)
    await say(ws, "fine", "still here")
    assert (await receive(ws))["id"] == "fine"
    await ws.close()
    assert await count(sessionmaker, Message, Message.text == "hi") == 0


async def test_a_member_nested_too_deep_refuses_that_message_by_its_id(
    client: Client, sessionmaker: SessionMaker
) -> None:
    ws, _ = await connect(client)
    await ws.send_str(_MESSAGE + "[" * 64 + "]" * 64 + "}")
    error = await receive(ws)
    assert error["id"] == "m1"
    assert error["reason"] == "the message cannot be taken: extra nested deeper than 64 levels"
    await ws.close()
    assert await count(sessionmaker, Message, Message.text == "hi") == 0


async def test_a_lone_surrogate_is_refused_and_nothing_is_stored(
    client: Client, sessionmaker: SessionMaker
) -> None:
    ws, _ = await connect(client)
    await ws.send_str('{"type": "message", "id": "s", "text": "hola \\ud800"}')
    error = await receive(ws)
    assert error["id"] == "s"
    assert "lone UTF-16 surrogate" in error["reason"]
    await say(ws, "fine", "still here")
    assert (await receive(ws))["id"] == "fine"
    await ws.close()
    assert await count(sessionmaker, Message, Message.provider_id.like("%:s")) == 0


async def test_a_failure_on_our_side_closes_the_socket_with_a_reason(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(chat, "_answer", broken)
    ws, _ = await connect(client)
    await say(ws, "b", "hello")
    closing = await ws.receive(timeout=5)
    assert closing.type is WSMsgType.CLOSE
    assert closing.data == chat.CLOSE_INTERNAL_ERROR
    assert closing.extra == "the chat failed on our side: please reconnect"


async def test_a_message_the_bot_never_answers_is_to_be_sent_again_and_then_answered(
    aiohttp_client: ClientFactory,
    settings: Settings,
    sessionmaker: SessionMaker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = SilentBot()
    # One new lead an hour from this address: sending it again is not another one.
    configured = settings.model_copy(update={"bot_timeout": 0.05, "webchat_new_leads_per_hour": 1})
    client = await aiohttp_client(create_app(configured, brain=bot))
    ws, _ = await connect(client)
    await say(ws, "q", "anyone there?")
    refused = await receive(ws)
    assert (refused["type"], refused["code"], refused["id"]) == ("error", "not_delivered", "q")
    assert not [r for r in caplog.records if r.exc_info]  # a warning: the bot, not a bug
    assert await count(sessionmaker, Message) == 1  # stored, awaiting the bot
    bot.back = True
    await say(ws, "q", "anyone there?")  # sent again under its id: asked again, stored once
    assert (await receive(ws))["id"] == "q"
    assert (await receive(ws))["text"] == "back: anyone there?"
    await ws.close()
    assert await count(sessionmaker, Message) == 2


# --- abuse limits per client address ------------------------------------------------------------


async def new_visitor(client: Client, **headers: str) -> int:
    """Open a socket as a browser without a cookie; the handshake's status (101 = accepted)."""
    client.session.cookie_jar.clear()
    try:
        ws = await client.ws_connect("/ws/chat", headers=headers)
    except WSServerHandshakeError as e:
        return e.status
    await ws.close()
    return 101


async def test_too_many_new_visitors_from_one_address_are_refused(
    make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    client: Client = await make_client(with_secret(settings, webchat_new_visitors_per_minute=2))
    assert [await new_visitor(client) for _ in range(2)] == [101, 101]
    (returning,) = [m for m in client.session.cookie_jar if m.key == VISITOR_COOKIE]
    client.session.cookie_jar.clear()
    refused = await client.get("/ws/chat", headers=UPGRADE)
    assert refused.status == 429
    body = await refused.json()
    assert body["error"] == "too many new chats"
    assert "the limit is 2 a minute" in body["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # A returning visitor is no new visitor.
    client.session.cookie_jar.update_cookies({VISITOR_COOKIE: returning.value})
    ws, history = await connect(client)
    assert history["type"] == "history"
    await ws.close()


UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def test_behind_a_trusted_proxy_each_client_is_counted_apart(
    make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    client: Client = await make_client(
        with_secret(settings, webchat_new_visitors_per_minute=1, trusted_proxies="127.0.0.1,::1")
    )
    one, two = {"X-Forwarded-For": "203.0.113.5"}, {"X-Forwarded-For": "198.51.100.7"}
    assert await new_visitor(client, **one) == 101
    assert await new_visitor(client, **two) == 101
    assert await new_visitor(client, **one) == 429


async def test_an_untrusted_forwarded_for_is_not_believed(client: Client) -> None:
    limited: Client = client
    for n in range(20):  # the default: 20 new visitors a minute
        assert await new_visitor(limited, **{"X-Forwarded-For": f"203.0.113.{n}"}) == 101
    assert await new_visitor(limited, **{"X-Forwarded-For": "198.51.100.1"}) == 429


async def test_too_many_new_leads_from_one_address_are_refused(
    make_client: Callable[[Settings], Any], settings: Settings, sessionmaker: SessionMaker
) -> None:
    client: Client = await make_client(with_secret(settings, webchat_new_leads_per_hour=1))
    ws, _ = await connect(client)
    await say(ws, "a1", "hello")
    assert (await receive(ws))["id"] == "a1"
    assert (await receive(ws))["author"] == "bot"
    await ws.close()
    first = next(m for m in client.session.cookie_jar if m.key == VISITOR_COOKIE).value

    client.session.cookie_jar.clear()
    ws, _ = await connect(client)
    await say(ws, "b1", "hello")
    refused = await receive(ws)
    assert refused["id"] == "b1"
    assert refused["reason"].startswith("too many new conversations from your network")
    await ws.close()
    assert await count(sessionmaker, Identity, Identity.kind == IdentityKind.WEBCHAT.value) == 1

    # The first visitor, a customer already, writes on.
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({VISITOR_COOKIE: first})
    ws, _ = await connect(client)
    await say(ws, "a2", "me again")
    assert (await receive(ws))["id"] == "a2"
    await ws.close()


# --- the widget's texts -------------------------------------------------------------------------


async def widget_texts(client: Client, **params: str) -> dict[str, Any]:
    response = await client.get("/chat/texts", params=params)
    assert response.status == 200
    assert response.content_type == "application/json"
    document: dict[str, Any] = await response.json()
    return document


async def test_the_widget_gets_its_texts_from_the_catalogue_in_the_visitors_language(
    client: Client,
) -> None:
    spanish = await widget_texts(client, lang="es-ES")
    assert spanish["language"] == "es"
    assert spanish["texts"]["launcher"] == translate("es", "widget.launcher")
    assert spanish["texts"]["too_long"] == translate(
        "es", "widget.too_long", count="{count}", limit="{limit}"
    )  # a template: the widget fills in the fields as the visitor types
    assert spanish["limit"] == MAX_TEXT
    english = await widget_texts(client, lang="en")
    assert english["texts"]["launcher"] == translate("en", "widget.launcher")
    assert english["texts"].keys() == spanish["texts"].keys()


async def test_without_lang_the_widget_texts_follow_the_browser_then_the_default_language(
    make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    client: Client = await make_client(with_secret(settings, default_language="es"))
    asked = await client.get("/chat/texts", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert (await asked.json())["language"] == "en"
    assert (await widget_texts(client, lang="xx"))["language"] == "es"  # no catalogue: default
    assert (await widget_texts(client, lang="<script>"))["language"] == "es"  # not a language


async def test_the_widget_texts_are_cacheable_and_revalidated(client: Client) -> None:
    first = await client.get("/chat/texts", params={"lang": "es"})
    assert first.headers["Cache-Control"] == "public, no-cache"
    assert {"Origin", "Accept-Language"} <= {v.strip() for v in first.headers["Vary"].split(",")}
    assert "Set-Cookie" not in first.headers
    etag = first.headers["ETag"]
    again = await client.get("/chat/texts", params={"lang": "es"}, headers={"If-None-Match": etag})
    assert again.status == 304
    other = await client.get("/chat/texts", params={"lang": "en"}, headers={"If-None-Match": etag})
    assert other.status == 200  # another language, another ETag


async def test_the_widget_texts_are_readable_only_by_sites_that_may_embed_the_chat(
    make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    client: Client = await make_client(
        with_secret(settings, webchat_origins="https://shop.example")
    )
    listed = await client.get("/chat/texts", headers={"Origin": "https://shop.example"})
    assert listed.status == 200
    assert listed.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Access-Control-Allow-Credentials" not in listed.headers
    refused = await client.get("/chat/texts", headers={"Origin": "https://evil.example"})
    assert refused.status == 403
    assert (await refused.json())["error"] == "origin not allowed"
    assert "Access-Control-Allow-Origin" not in refused.headers
    same_site = await client.get("/chat/texts")  # a same-origin GET carries no Origin
    assert same_site.status == 200
    assert "Access-Control-Allow-Origin" not in same_site.headers


async def test_the_widget_script_holds_no_texts_of_its_own(client: Client) -> None:
    """Every word the widget shows comes from /chat/texts: each key it reads is there, and no
    sentence of either language is written into the script."""
    script = await (await client.get("/static/widget.js")).text()
    texts = (await widget_texts(client, lang="es"))["texts"]
    read = set(re.findall(r"\bT\.(\w+)", script)) | set(re.findall(r'\bT\["([\w.]+)"\]', script))
    # Keys built at run time: "author." + a message's author, "state." + a message's state.
    read |= {f"author.{a}" for a in ("customer", "bot", "agent")}
    read |= {f"state.{s}" for s in ("pending", "failed")}
    assert read <= texts.keys()
    assert {"launcher", "title", "status.offline", "too_long"} <= read  # the scan finds them
    for language in ("es", "en"):
        for key, text in (await widget_texts(client, lang=language))["texts"].items():
            words = text.split("{", 1)[0].strip()
            if len(words) > 3:
                assert words not in script, (language, key)


# --- in the visitor's language ------------------------------------------------------------------


async def test_refusals_are_in_the_language_the_chat_was_opened_with(client: Client) -> None:
    # Once in English whatever the visitor's language; the codes stay the same for programs.
    ws, _ = await connect(client, lang="es")
    await say(ws, "long", "x" * 4001)
    too_long = await receive(ws)
    assert (too_long["code"], too_long["id"]) == ("too_long", "long")
    assert too_long["reason"] == translate("es", "webchat.too_long", count="4.001", limit="4.000")
    await say(ws, "e", " ")
    empty = await receive(ws)
    assert (empty["code"], empty["reason"]) == ("empty", translate("es", "webchat.empty"))
    await ws.send_json({"type": "typing"})
    unknown = await receive(ws)
    assert unknown["code"] == "unknown_type"
    assert unknown["reason"] == translate("es", "webchat.unknown_type", type="'typing'")
    await ws.close()


async def test_identity_notices_are_in_the_visitor_s_language(client: Client) -> None:
    _, error = await connect(client, lang="es", user_id="C-1")
    assert error == {
        "type": "error",
        "code": "identity_incomplete",
        "reason": translate("es", "webchat.identity_incomplete"),
    }


async def test_the_limit_on_new_chats_is_said_in_the_visitor_s_language(
    make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    client: Client = await make_client(with_secret(settings, webchat_new_visitors_per_minute=1))
    assert await new_visitor(client) == 101
    client.session.cookie_jar.clear()
    refused = await client.get("/ws/chat", params={"lang": "es"}, headers=UPGRADE)
    assert refused.status == 429
    body = await refused.json()
    assert body["error"] == "too many new chats"  # for programs: the same in every language
    assert body["detail"].startswith("demasiados chats nuevos desde tu red")
    assert "1 por minuto" in body["detail"]


async def test_the_limit_on_new_conversations_is_said_in_the_visitor_s_language(
    make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    client: Client = await make_client(with_secret(settings, webchat_new_leads_per_hour=1))
    ws, _ = await connect(client, lang="es")
    await say(ws, "a1", "hola")
    assert (await receive(ws))["id"] == "a1"
    await receive(ws)
    await ws.close()
    client.session.cookie_jar.clear()
    ws, _ = await connect(client, lang="es")
    await say(ws, "b1", "hola")
    refused = await receive(ws)
    assert (refused["id"], refused["code"]) == ("b1", "too_many_leads")
    assert refused["reason"].startswith("demasiadas conversaciones nuevas desde tu red")
    await ws.close()


async def test_a_nul_in_the_text_is_refused_naming_the_message_and_nothing_is_stored(
    client: Client, sessionmaker: SessionMaker
) -> None:
    # Once stored (SQLite) or a failure (PostgreSQL refuses NUL in text).
    ws, _ = await connect(client)
    await ws.send_str('{"type": "message", "id": "n", "text": "hola\\u0000"}')
    error = await receive(ws)
    assert (error["id"], error["code"]) == ("n", "not_taken")
    assert error["reason"].startswith("the message cannot be taken: text holds a NUL character")
    await say(ws, "fine", "still here")
    assert (await receive(ws))["id"] == "fine"
    await ws.close()
    assert await count(sessionmaker, Message, Message.text.like("hola%")) == 0


async def test_help_in_spanish_is_spanish_throughout(client: Client) -> None:
    # The default support contact was English prose ("our web chat or ..."), set inside the
    # Spanish sentence; a bare contact lets the catalogue's sentence say it.
    ws, _ = await connect(client, lang="es")
    await say(ws, "h", "AYUDA")
    assert (await receive(ws))["id"] == "h"
    reply = await receive(ws)
    await ws.close()
    assert reply["author"] == "bot"
    assert "ayuda en support@example.com." in reply["text"]
    assert "web chat" not in reply["text"]
