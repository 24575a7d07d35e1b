"""`action_request_callback`: "call me tomorrow at 10".

A call-back is a promise, so it is only confirmed when someone can keep it: a customer Sastre
knows no phone number of (a web chat visitor, an e-mail) is asked for one, and the request waits
(the `awaiting` slot, `actions.awaiting`) until they give it. The number they give goes on the
request, and is linked to them as an unverified phone identity unless it is someone else's or
the sender is unproven (an e-mail nothing vouches for: `actions.proof`).
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import override

from actions.awaiting import AWAITING_SLOT, Awaiting
from actions.deps import TrackerFacts, deps, spoken_appointment, unit_of_work
from actions.proof import sender_proven
from crm_core.customers import IdentityConflict, attach_identity, get_customer
from crm_core.models import Identity, IdentityKind, Interaction, InteractionKind
from crm_core.phones import is_dialable
from crm_core.sqltypes import utcnow
from crm_core.timeline import add_interaction
from wording import N_, translate

__all__ = [
    "ActionRequestCallback",
    "CallbackInPast",
    "callback_confirmation",
    "find_phone",
    "known_phone",
    "parse_requested_time",
    "request_callback",
]

_SOON = timedelta(days=6)  # within a week the weekday and day are enough; later, add the month


class CallbackInPast(ValueError):
    pass


def parse_requested_time(value: str, timezone: ZoneInfo) -> datetime | None:
    """An ISO time from the NLU or the slot; a time without an offset is the customer's local."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone)


def find_phone(text: str, region: str) -> str | None:
    """The first valid phone number written in `text`, in E.164 ("+34612345678")."""
    for match in phonenumbers.PhoneNumberMatcher(text, region):
        return str(phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164))
    return None


async def known_phone(session: AsyncSession, customer_id: int) -> str | None:
    """A phone number the customer is known by, a verified one first (not a short code's or a
    sender id's address, which nobody can call)."""
    phones = await session.scalars(
        select(Identity.value)
        .where(Identity.customer_id == customer_id, Identity.kind == IdentityKind.PHONE.value)
        .order_by(Identity.verified.desc(), Identity.value)
    )
    return next((str(phone) for phone in phones if is_dialable(phone)), None)


async def request_callback(
    session: AsyncSession,
    customer_id: int,
    when: datetime,
    *,
    channel: str | None,
    timezone: ZoneInfo,
    phone: str | None = None,
    now: datetime | None = None,
) -> Interaction:
    """Put the requested call-back on the customer's timeline, where the agents' queue finds it."""
    if when <= (now or utcnow()):
        raise CallbackInPast(f"{when.isoformat()} is in the past")
    local = when.astimezone(timezone)
    data: dict[str, Any] = {
        "requested_for": when.isoformat(),
        "channel": channel,
        "status": "requested",
    }
    if phone is not None:
        data["phone"] = phone
    return await add_interaction(
        session,
        customer_id,
        InteractionKind.CALLBACK,
        f"Call-back requested for {local:%Y-%m-%d %H:%M} ({timezone.key})",
        channel=channel,
        actor="customer",
        data=data,
    )


def _when(when: datetime, timezone: ZoneInfo, language: str, now: datetime | None) -> str:
    local = when.astimezone(timezone)
    soon = local - (now or utcnow()) <= _SOON
    return spoken_appointment(local, language, with_month=not soon)


def callback_confirmation(
    when: datetime,
    timezone: ZoneInfo,
    language: str,
    *,
    phone: str | None = None,
    now: datetime | None = None,
) -> str:
    """ "We'll call you on Tuesday 24 at 10:00." (with the number when it was just given)."""
    spoken = _when(when, timezone, language, now)
    if phone is None:
        return translate(language, "callback.done", when=spoken)
    shown = phonenumbers.format_number(
        phonenumbers.parse(phone), phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return translate(language, "callback.done_at", when=spoken, phone=shown)


async def _link_phone(session: AsyncSession, customer_id: int, phone: str, region: str) -> None:
    """The number becomes the customer's, unverified; one that is someone else's stays only on
    the request (joining two people is a merge, for a person to decide)."""
    with suppress(IdentityConflict):
        await attach_identity(session, customer_id, IdentityKind.PHONE.value, phone, region)


class ActionRequestCallback(Action):  # type: ignore[misc]
    @override
    def name(self) -> str:
        return "action_request_callback"

    @override
    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        facts = TrackerFacts.of(tracker)
        raw = facts.entity("datetime") or facts.slot("callback_time")
        asked_phone = Awaiting.of(facts.slot(AWAITING_SLOT)) is Awaiting.CALLBACK_PHONE
        async with unit_of_work() as session:
            customer = await get_customer(session, facts.customer_id)
            language = facts.language(customer.language)
            timezone = facts.timezone(customer.timezone, deps().default_timezone)
            when = parse_requested_time(raw, timezone) if raw else None
            if when is None:
                dispatcher.utter_message(text=translate(language, "callback.ask_time"))
                return [SlotSet(AWAITING_SLOT, None)]
            if when <= utcnow():
                dispatcher.utter_message(text=translate(language, "callback.past"))
                return [SlotSet("callback_time", None), SlotSet(AWAITING_SLOT, None)]
            phone = await known_phone(session, customer.id)
            given = None
            if phone is None:
                region = customer.country or deps().default_region
                given = find_phone(facts.text, region)
                if given is None:
                    key = N_("callback.bad_phone") if asked_phone else N_("callback.ask_phone")
                    spoken = _when(when, timezone, language, None)
                    dispatcher.utter_message(text=translate(language, key, when=spoken))
                    return [
                        SlotSet("callback_time", when.isoformat()),
                        SlotSet(AWAITING_SLOT, Awaiting.CALLBACK_PHONE.value),
                    ]
                if sender_proven(facts):
                    await _link_phone(session, customer.id, given, region)
                # From a sender nothing vouches for (a From anyone can write), the number stays
                # on the request only: linked, it would let its holder text in as the customer.
            await request_callback(
                session,
                customer.id,
                when,
                channel=facts.slot("channel"),
                timezone=timezone,
                phone=phone or given,
            )
        dispatcher.utter_message(text=callback_confirmation(when, timezone, language, phone=given))
        return [SlotSet("callback_time", when.isoformat()), SlotSet(AWAITING_SLOT, None)]
