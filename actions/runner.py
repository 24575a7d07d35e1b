"""Running the actions: in-process for the embedded dialog, or as rasa-sdk's action server.

Both go through rasa-sdk's own `ActionExecutor`, so an action behaves the same whether the
embedded dialog or a real Rasa server asked for it.
"""

from __future__ import annotations

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
) -> None:
    """Serve the actions with rasa-sdk's own action server (Sanic), in this process.

    `resources` opens what the actions need (the database engine, ...) on the server's event loop
    and closes it when the server stops; without it, `configure` must have been called already.
    `sock`, a socket already listening, is served instead of binding `host` and `port`.
    """
    from rasa_sdk.endpoint import create_app  # Sanic: only for the server, not the dialog

    app = create_app(build_executor(), cors_origins="")
    if resources is not None:
        stack = AsyncExitStack()

        async def open_resources(*_: Any) -> None:
            configure(await stack.enter_async_context(resources()))

        async def close_resources(*_: Any) -> None:
            await stack.aclose()

        app.register_listener(open_resources, "before_server_start")
        app.register_listener(close_resources, "after_server_stop")
    # Sanic takes over SIGTERM only once its server is up, and the socket may already be serving
    # then (it listened before the server started): a SIGTERM in between would kill the process
    # mid-start. Until Sanic's own handler replaces this one, a SIGTERM is remembered, and the
    # server stops as soon as it has started.
    stop_asked: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: stop_asked.append(signum))

    async def stop_if_asked(app_: Any, *_: Any) -> None:
        if stop_asked:
            app_.stop(terminate=False)

    app.register_listener(stop_if_asked, "after_server_start")
    where: dict[str, Any] = {"sock": sock} if sock is not None else {"host": host, "port": port}
    try:
        app.run(**where, single_process=True, access_log=False, motd=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
