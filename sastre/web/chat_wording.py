"""What a web chat visitor reads when the chat refuses something, in the visitor's language.

Every refusal has a machine-readable code, sent as the error frame's `code` (a frame the chat
cannot take: `channels.webchat.ProtocolError`; a limit on new chats or conversations:
`sastre.web.chat_limits.Refusal`; an identity proof that does not check out; a message sent too
fast or not delivered), and one sentence per code in the catalogue, `webchat.<code>`, which this
module fills in. The language is the one the socket was opened with, then the service's default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from sastre.web.chat_limits import Refusal
from wording import N_, pick_language, translate

__all__ = ["CODES", "limit_refusal", "refusal"]

# Code -> catalogue id: every code the chat sends, each spelt out for `pybabel extract`.
CODES: Final[Mapping[str, str]] = {
    # frames (channels.webchat)
    "not_json": N_("webchat.not_json"),
    "not_an_object": N_("webchat.not_an_object"),
    "unknown_type": N_("webchat.unknown_type"),
    "bad_id": N_("webchat.bad_id"),
    "empty": N_("webchat.empty"),
    "too_long": N_("webchat.too_long"),
    "binary": N_("webchat.binary"),
    "frame_not_taken": N_("webchat.frame_not_taken"),
    "not_taken": N_("webchat.not_taken"),
    # the socket's own limits and failures
    "slow_down": N_("webchat.slow_down"),
    "not_delivered": N_("webchat.not_delivered"),
    "id_reused": N_("webchat.id_reused"),
    # new chats and conversations per network (sastre.web.chat_limits)
    "too_many_chats": N_("webchat.too_many_chats"),
    "too_many_leads": N_("webchat.too_many_leads"),
    # identity verification
    "identity_incomplete": N_("webchat.identity_incomplete"),
    "identity_unconfigured": N_("webchat.identity_unconfigured"),
    "identity_failed": N_("webchat.identity_failed"),
}


def refusal(code: str, language: str | None, default: str, **params: object) -> str:
    """The visitor's sentence for `code`; numbers among `params` written as their language does."""
    from babel.numbers import format_decimal  # as wording does: Babel is loaded when first used

    locale = pick_language(language, default)
    shown = {
        name: format_decimal(value, locale=locale)
        if isinstance(value, int) and not isinstance(value, bool)
        else value
        for name, value in params.items()
    }
    return translate(language, CODES[code], default=default, **shown)


def limit_refusal(refused: Refusal, language: str | None, default: str) -> str:
    """The sentence for a chat limit, with how long to wait."""
    return refusal(
        refused.code, language, default, limit=refused.limit, wait=_wait(refused, language, default)
    )


def _wait(refused: Refusal, language: str | None, default: str) -> str:
    seconds = refused.retry_after
    if seconds <= 1:
        return translate(language, "webchat.wait.second", default=default)
    if seconds < 90:
        return translate(language, "webchat.wait.seconds", default=default, count=seconds)
    minutes = -(-seconds // 60)  # rounded up: never tell them to come back too early
    return translate(language, "webchat.wait.minutes", default=default, count=minutes)
