"""Running the actions: in-process for the embedded dialog, or as rasa-sdk's action server.

Both go through rasa-sdk's own `ActionExecutor`, so an action behaves the same whether the
embedded dialog or a real Rasa server asked for it.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from rasa_sdk import Action
from rasa_sdk.executor import ActionExecutor
from sqlalchemy.ext.asyncio import AsyncSession

from actions.callback import ActionRequestCallback
from actions.deps import ActionDeps, configure, current_session
from actions.handoff import ActionHandoff
from actions.opt_out import ActionOptOut
from actions.order_status import ActionOrderStatus
from actions.preferences import ActionUpdatePreferences
from actions.profile import ActionCustomerProfile

__all__ = [
    "ACTIONS",
    "SLOTS",
    "ActionOutcome",
    "EmbeddedActions",
    "build_executor",
    "outcome_of",
    "serve",
]

# Registered explicitly: scanning a package registers whatever Action subclass happens to be
# imported, tests' included.
ACTIONS: tuple[type[Action], ...] = (
    ActionOrderStatus,
    ActionRequestCallback,
    ActionUpdatePreferences,
    ActionOptOut,
    ActionCustomerProfile,
    ActionHandoff,
)
SLOTS = (
    "language",
    "timezone",
    "channel",
    "order_number",
    "callback_time",
    "customer_name",
    "tier",
    "handoff_reason",
    "awaiting",  # actions.awaiting: the question an action asked
    "opt_out_request",
    "sender_proven",  # actions.proof: account data only for a proven sender
)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5055


def build_executor() -> ActionExecutor:
    executor = ActionExecutor()
    for action in ACTIONS:
        executor.register_action(action)
    return executor


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    texts: list[str]
    events: list[dict[str, Any]]
    handoff: str | None = None
    slots: dict[str, Any] = field(default_factory=dict)


class EmbeddedActions:
    """The actions run in-process, inside the inbound message's transaction when one is given."""

    def __init__(self) -> None:
        self._executor = build_executor()
        names = [action().name() for action in ACTIONS]
        self._domain: dict[str, Any] = {
            "slots": {name: {"type": "any"} for name in SLOTS},
            "actions": names,
            "responses": {},
            "intents": [],
            "entities": ["order_number", "datetime"],
        }

    @property
    def names(self) -> list[str]:
        return list(self._domain["actions"])

    async def run(
        self,
        name: str,
        *,
        customer_id: int,
        text: str,
        intent: str,
        confidence: float,
        entities: Sequence[Mapping[str, Any]],
        slots: Mapping[str, Any],
        session: AsyncSession | None,
    ) -> ActionOutcome:
        action_call: dict[str, Any] = {
            "next_action": name,
            "sender_id": str(customer_id),
            "version": None,
            "domain": self._domain,
            "tracker": {
                "sender_id": str(customer_id),
                "slots": {slot: slots.get(slot) for slot in (*SLOTS, *slots)},
                "latest_message": {
                    "text": text,
                    "intent": {"name": intent, "confidence": confidence},
                    "entities": [dict(entity) for entity in entities],
                },
                "events": [],
                "paused": False,
                "followup_action": None,
                "active_loop": {},
                "latest_action_name": "action_listen",
            },
        }
        token = current_session.set(session)
        try:
            result = await self._executor.run(action_call)
        finally:
            current_session.reset(token)
        if result is None:  # pragma: no cover - only without a next_action
            raise LookupError(f"no action {name!r}")
        return outcome_of(result.events, result.responses)


def outcome_of(
    events: Sequence[Mapping[str, Any]], responses: Sequence[Mapping[str, Any]]
) -> ActionOutcome:
    """What the dialog needs from an action server's answer (ours, or a real Rasa's)."""
    texts = [str(r["text"]) for r in responses if r.get("text")]
    handoff = next(
        (str(r["custom"]["handoff"]) for r in responses if (r.get("custom") or {}).get("handoff")),
        None,
    )
    slots = {str(e["name"]): e.get("value") for e in events if e.get("event") == "slot"}
    return ActionOutcome(texts, [dict(e) for e in events], handoff, slots)


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    resources: Callable[[], AbstractAsyncContextManager[ActionDeps]] | None = None,
    sock: socket.socket | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """Serve the actions with rasa-sdk's own action server (Sanic) until SIGTERM or SIGINT.

    `resources` opens what the actions need (the database engine, ...) before the server answers
    and closes it once the server has stopped; without it, `configure` must have been called.
    `sock`, a socket already listening, is served instead of binding `host` and `port`.
    `ready` is called once the server answers and a SIGTERM would stop it cleanly.
    """
    asyncio.run(_serve(host, port, resources=resources, sock=sock, ready=ready))


async def _serve(
    host: str,
    port: int,
    *,
    resources: Callable[[], AbstractAsyncContextManager[ActionDeps]] | None,
    sock: socket.socket | None,
    ready: Callable[[], None] | None,
) -> None:
    from rasa_sdk.endpoint import create_app  # Sanic: only for the server, not the dialog

    # Sanic's own runner (`app.run`) installs its signal handlers only once the server is up, and
    # a stop asked for while it still runs its start-up events is lost: the process then never
    # stops. On Sanic's low-level API the loop and its signals are ours from the first instant, so
    # a SIGTERM at any moment stops the server once, cleanly.
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with AsyncExitStack() as stack:
            if resources is not None:
                configure(await stack.enter_async_context(resources()))
            app = create_app(build_executor(), cors_origins="")
            where: dict[str, Any] = (
                {"sock": sock} if sock is not None else {"host": host, "port": port}
            )
            server = await app.create_server(**where, access_log=False)
            if server is None:  # pragma: no cover - Sanic always returns it now
                raise RuntimeError("Sanic did not create the action server")
            await server.startup()
            await server.before_start()
            await server.after_start()
            if ready is not None:
                ready()
            try:
                await stop.wait()
            finally:
                await server.before_stop()
                await server.close()
                for connection in server.connections:  # idle keep-alive ones; busy ones finish
                    connection.close_if_idle()
                await server.after_stop()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
