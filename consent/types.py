"""The vocabulary of consent: channels, purposes, actions, sources and the states they lead to."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["GENERAL", "Action", "Channel", "ConsentStatus", "Purpose", "Source"]

# The topic of a consent that covers every topic of its purpose ("marketing" at large).
GENERAL = ""


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    TELEGRAM = "telegram"
    WEBCHAT = "webchat"
    VOICE = "voice"


class Purpose(StrEnum):
    SERVICE = "service"  # answers, call-back confirmations: needs no opt-in, but STOP stops it
    MARKETING = "marketing"  # needs an explicit (and on e-mail and SMS, confirmed) opt-in


class Action(StrEnum):
    GRANT = "grant"
    REVOKE = "revoke"
    CONFIRM = "confirm"  # the second step of double opt-in


class Source(StrEnum):
    WEB_FORM = "web_form"
    KEYWORD = "keyword"
    UNSUBSCRIBE_LINK = "unsubscribe_link"
    PREFERENCE_CENTRE = "preference_centre"
    AGENT = "agent"
    IMPORT = "import"
    API = "api"
    PROVIDER = "provider"  # e.g. Twilio error 21610: the carrier says the number opted out
    MERGE = "merge"  # two customer records became one; the most restrictive state was kept


class ConsentStatus(StrEnum):
    PENDING = "pending"  # granted, waiting for the confirmation of double opt-in
    GRANTED = "granted"
    REVOKED = "revoked"
