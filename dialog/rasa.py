"""A real Rasa server instead of the embedded understanding (`SASTRE_RASA_URL`).

User text goes to the server's REST channel (`POST /webhooks/rest/webhook`, body
`{"sender": ..., "message": ...}`); its answer is a list of bot messages, `{"text": ...}` or
`{"custom": {...}}`. Sastre's `action_handoff` sends `{"custom": {"handoff": reason}}`, which is
how a hand-off crosses the REST channel. The actions themselves run on `sastre actions`.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from dialog.turns import BotTurn, Turn
from wording import translate

__all__ = ["RasaRestBrain", "RasaUnavailable"]

log = logging.getLogger(__name__)


class RasaUnavailable(Exception):
    pass


class RasaRestBrain:
    """A `RemoteBot`: Rasa and its action server have their own connections, so it is asked
    with no transaction open and given no session."""

    def __init__(
        self, base_url: str, session: aiohttp.ClientSession, *, timeout: float = 5
    ) -> None:
        self._url = base_url.rstrip("/") + "/webhooks/rest/webhook"
        self._http = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def ask(self, turn: Turn) -> BotTurn:
        """Rasa's answer; if Rasa is down the customer goes to a person rather than nowhere."""
        try:
            return await self._ask(turn)
        except RasaUnavailable as e:
            log.warning("%s: handing the conversation to a person", e)
            return BotTurn(
                replies=[translate(turn.language, "handoff.notice")],
                handoff="bot_unavailable",
            )

    async def _ask(self, turn: Turn) -> BotTurn:
        body = {
            "sender": str(turn.customer.id),
            "message": turn.text,
            "metadata": {
                "language": turn.language,
                "timezone": turn.timezone,
                "channel": turn.conversation.channel,
                "tier": turn.customer.tier,
                "sender_proven": turn.sender_proven,
            },
        }
        try:
            async with self._http.post(self._url, json=body, timeout=self._timeout) as response:
                if response.status != 200:
                    raise RasaUnavailable(f"Rasa answered {response.status}")
                messages: Any = await response.json()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise RasaUnavailable(f"Rasa is unreachable: {e}") from e
        return _turn_from(messages)


def _turn_from(messages: Any) -> BotTurn:
    if not isinstance(messages, list):
        raise RasaUnavailable("Rasa's answer is not a list of messages")
    turn = BotTurn()
    for message in messages:
        if not isinstance(message, dict):
            continue
        if isinstance(message.get("text"), str):
            turn.replies.append(message["text"])
        custom = message.get("custom")
        if isinstance(custom, dict) and isinstance(custom.get("handoff"), str):
            turn.handoff = custom["handoff"]
            turn.complaint = custom["handoff"] == "complaint"
    return turn
