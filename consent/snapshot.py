"""Loading what the contact policy needs about one customer: the impure edge around `decide`."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta
from functools import cache

import phonenumbers
import pycountry
from phonenumbers import geocoder
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from consent.models import ConsentState, ContactMade, Undeliverable
from consent.policy import ContactHours, ContactState, ContactWindow, contact_hours_for
from consent.preferences import load_preferences, resolve_timezone
from consent.types import Channel, ConsentStatus, Purpose
from crm_core.customers import get_customer
from crm_core.models import Identity, IdentityKind, Interaction, InteractionKind, Tier
from crm_core.phones import dialable

__all__ = [
    "CHANNEL_IDENTITIES",
    "load_contact_state",
    "region_of_phone",
    "undeliverable_channels",
]

# Which identity makes a channel reachable.
CHANNEL_IDENTITIES: Mapping[Channel, IdentityKind] = {
    Channel.EMAIL: IdentityKind.EMAIL,
    Channel.SMS: IdentityKind.PHONE,
    Channel.VOICE: IdentityKind.PHONE,
    Channel.TELEGRAM: IdentityKind.TELEGRAM,
    Channel.WEBCHAT: IdentityKind.WEBCHAT,
}
CAP_HORIZON = timedelta(days=8)  # the longest frequency-cap window, with a day to spare


@cache
def _subdivisions(country: str) -> dict[str, str]:
    """Subdivision names (lower-case) to codes: 'florida' -> 'FL'."""
    found = pycountry.subdivisions.get(country_code=country) or []  # type: ignore[no-untyped-call]
    return {s.name.lower(): s.code.split("-", 1)[1] for s in found}


def region_of_phone(e164: str) -> tuple[str | None, str | None]:
    """(country, region) a number belongs to, e.g. ('US', 'FL'), for location-based contact hours.

    phonenumbers' geocoder names the place ("Florida", "Miami, FL", "Washington State"). A phone
    identity kept as written (a short code, a sender id: `crm_core.phones`) is in no place.
    """
    number = dialable(e164)
    if number is None:
        return None, None
    country = phonenumbers.region_code_for_number(number)
    if not country:
        return None, None
    place = geocoder.description_for_number(number, "en")
    names = _subdivisions(country)
    codes = set(names.values())
    tail = place.rsplit(",", 1)[-1].strip()
    if tail in codes:
        return country, tail
    place = place.lower().removesuffix(" state")
    return country, names.get(place)


def undeliverable_channels(
    identities: Iterable[tuple[str, str]], marks: Collection[tuple[str, str]]
) -> frozenset[Channel]:
    """The channels on which every address the customer holds is marked undeliverable.

    A mark is for one address on one channel: a customer whose old number bounced and who gave
    a new one is reachable by SMS again, and a number SMS cannot reach (a landline) may still
    take a call. A mark for an address the customer no longer holds counts for nothing."""
    if not marks:
        return frozenset()
    held: dict[Channel, set[str]] = {}
    for channel, kind in CHANNEL_IDENTITIES.items():
        held[channel] = {
            value
            for identity_kind, value in identities
            if identity_kind == kind.value and (kind is not IdentityKind.PHONE or dialable(value))
        }
    return frozenset(
        channel
        for channel, addresses in held.items()
        if addresses and all((channel.value, address) in marks for address in addresses)
    )


async def load_contact_state(
    session: AsyncSession,
    customer_id: int,
    *,
    at: datetime,
    default_timezone: str,
    quiet_overrides: Mapping[str, ContactHours] | None = None,
) -> ContactState:
    """What `decide` needs about the customer at `at`. `quiet_overrides` maps "CC" or "CC-RR" to
    the contact hours of that place (`contact_hours_for`)."""
    customer = await get_customer(session, customer_id)
    preferences = await load_preferences(session, customer.id)
    identities = list(
        await session.execute(
            select(Identity.kind, Identity.value).where(Identity.customer_id == customer.id)
        )
    )
    # A phone identity that is no number (a short code's, a sender id's) makes nothing
    # reachable: those senders take no replies, so the policy never picks them.
    phones = [
        value for kind, value in identities if kind == IdentityKind.PHONE.value and dialable(value)
    ]
    kinds = {kind for kind, _ in identities if kind != IdentityKind.PHONE.value}
    kinds |= {IdentityKind.PHONE.value} if phones else set()
    reachable = frozenset(ch for ch, kind in CHANNEL_IDENTITIES.items() if kind.value in kinds)
    country, region = region_of_phone(phones[0]) if phones else (None, None)
    marks = {
        (channel, address)
        for channel, address in await session.execute(
            select(Undeliverable.channel, Undeliverable.address).where(
                Undeliverable.customer_id == customer.id
            )
        )
    }
    undeliverable = undeliverable_channels(identities, marks)
    consents = {
        (Channel(s.channel), Purpose(s.purpose), s.topic): ConsentStatus(s.status)
        for s in await session.scalars(
            select(ConsentState).where(ConsentState.customer_id == customer.id)
        )
    }
    last_complaint = await session.scalar(
        select(func.max(Interaction.occurred_at)).where(
            Interaction.customer_id == customer.id,
            Interaction.kind == InteractionKind.COMPLAINT.value,
        )
    )
    recent = await session.execute(
        select(ContactMade.channel, ContactMade.at).where(
            ContactMade.customer_id == customer.id,
            ContactMade.purpose == Purpose.MARKETING.value,
            ContactMade.at >= at - CAP_HORIZON,
        )
    )
    window = None
    if preferences.window_start is not None and preferences.window_end is not None:
        window = ContactWindow(
            days=preferences.window_days or frozenset(range(7)),
            start=preferences.window_start,
            end=preferences.window_end,
        )
    return ContactState(
        customer_id=customer.id,
        tier=Tier(customer.tier),
        timezone=await resolve_timezone(session, customer, preferences, default_timezone),
        contact_hours=contact_hours_for(customer.country or country, region, quiet_overrides),
        window=window,
        preferred_channels=preferences.channels,
        reachable=reachable,
        undeliverable=undeliverable,
        consents=consents,
        last_complaint_at=last_complaint,
        recent_marketing=tuple((Channel(ch), when) for ch, when in recent),
    )
