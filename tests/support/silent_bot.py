"""A bot outside the database that says nothing until it is back: the inbound path's bound on
waiting for it (SASTRE_BOT_TIMEOUT) gives up, and the message stays stored, awaiting it."""

from __future__ import annotations

import asyncio

from dialog.turns import BotTurn, Turn


class SilentBot:
    """A `RemoteBot` that never answers until `back` is set, then echoes."""

    def __init__(self) -> None:
        self.back = False

    async def ask(self, turn: Turn) -> BotTurn:
        if not self.back:
            await asyncio.Event().wait()  # never set: only the inbound path's bound ends this
        return BotTurn(replies=[f"back: {turn.text}"])
