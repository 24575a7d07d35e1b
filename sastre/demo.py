"""The demo data set behind `sastre demo`: a few hundred believable customers to explore.

Why it is built the way it is:

* **Through the real CRM functions.** Every customer goes through `records.parse_customer` and
  `customers.upsert_customer`, every timeline entry through `timeline.add_interaction`, and the
  tiers through `tiers.recompute_tiers`: the demo shows what the product does with real input,
  and a change that breaks those paths breaks the demo (and its test) too.
* **Deterministic.** Everything comes from `random.Random(seed)`; only the timeline's dates move
  with `now`, so "the last 180 days" stays true whenever the demo is loaded.
* **Idempotent.** Customers are keyed by external ids `DEMO-0001`, ...; a second run updates them
  to the same values, and only customers created by *this* run get a timeline and a web-chat
  identity, so nothing is duplicated.
* **Every tier on purpose.** The value figures are shaped for the rules in `crm_core.tiers`: a
  few top spenders make just over 80% of all positive profit (CMV), growing customers and
  students have a potential far above what they bring today (CMP; the students lose money now,
  yet are not BZ), some cost more than they bring with no potential above that cost (BZ), and
  most are standard.
* **Permission marketing to show.** Each customer lives a consent story (`sastre.demo_consent`):
  never asked, double opt-in confirmed on e-mail or SMS, signed up but never confirmed, STOP
  texted, unsubscribed by link, complained lately (a cooldown), or topics chosen in the
  preference centre; with preferred channels in order and contact windows. Every tier has them,
  so the contact decision allows some marketing and denies the rest, each for its own reason.
* **Both languages, real identities.** Spanish-speaking customers in ES, MX, AR and CO and
  English-speaking ones in US and GB, with matching time zones, phone numbers that
  `phonenumbers` accepts for their country, e-mail on reserved example domains, Telegram ids and
  web-chat ids, and timeline texts in the customer's language.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from consent.models import ConsentEvent
from crm_core.customers import upsert_customer
from crm_core.models import Identity, IdentityKind, InteractionKind
from crm_core.records import parse_customer
from crm_core.tiers import TierRules, recompute_tiers
from crm_core.timeline import add_interaction
from sastre.demo_consent import ConsentStory, Reach, plan_consent, write_consent

__all__ = ["DEMO_PREFIX", "TIMELINE_DAYS", "DemoSummary", "load_demo_data"]

DEMO_PREFIX = "DEMO-"
TIMELINE_DAYS = 180
# The tier rules the demo is shaped for and recomputes with.
_RULES = TierRules()
# The oldest day an event is placed on: local hours and time zones move it by up to a day, and
# the timeline must stay inside the last TIMELINE_DAYS.
_LATEST_DAY = TIMELINE_DAYS - 2
_EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
# The topics a demo customer may choose, unless the caller names the configured ones.
DEFAULT_TOPICS = ("new-products", "offers", "newsletter")
# A complaint this many days old or less keeps marketing away under the default 30-day cooldown.
_RECENT_COMPLAINT_DAYS = (2.0, 20.0)


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What one load did: customers created and updated, timeline entries added."""

    created: int
    updated: int
    interactions: int
    consent_events: int = 0


# --- who lives where ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Place:
    timezone: str
    # Leading digits of the national significant number of local mobile numbers.
    mobile_prefixes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Market:
    country: str
    language: str
    weight: int
    places: tuple[_Place, ...]


_SPANISH_FIRST = (
    "María", "Lucía", "Carmen", "Ana", "Laura", "Marta", "Elena", "Paula", "Sofía", "Valentina",
    "Camila", "Isabel", "Julia", "Daniela", "Gabriela", "Mariana", "Florencia", "Ximena", "Pilar",
    "Rocío", "José", "Antonio", "Manuel", "Javier", "Carlos", "Miguel", "Alejandro", "Pablo",
    "Diego", "Santiago", "Mateo", "Andrés", "Juan", "Luis", "Fernando", "Jorge", "Ricardo",
    "Sergio", "Tomás", "Joaquín",
)  # fmt: skip
_SPANISH_SURNAMES = (
    "García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez", "Pérez",
    "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno", "Muñoz", "Álvarez",
    "Romero", "Torres", "Ramírez", "Flores", "Castro", "Vargas", "Rojas", "Herrera", "Medina",
    "Aguilar", "Ortega", "Navarro", "Domínguez", "Vázquez", "Ramos", "Gil", "Serrano", "Molina",
)  # fmt: skip
_ENGLISH_FIRST = (
    "Emma", "Olivia", "Amelia", "Charlotte", "Sophie", "Grace", "Emily", "Hannah", "Jessica",
    "Sarah", "Megan", "Lucy", "Chloe", "Abigail", "Madison", "James", "Oliver", "Harry", "Jack",
    "George", "William", "Thomas", "Daniel", "Michael", "David", "Matthew", "Ethan", "Noah",
    "Liam", "Benjamin", "Samuel", "Joseph", "Ryan", "Andrew", "Christopher",
)  # fmt: skip
_ENGLISH_SURNAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Taylor",
    "Anderson", "Thomas", "Moore", "Martin", "Thompson", "White", "Harris", "Clark", "Lewis",
    "Walker", "Hall", "Allen", "Young", "King", "Wright", "Scott", "Green", "Baker", "Adams",
    "Evans", "Roberts", "Turner", "Phillips", "Campbell", "Parker", "Cooper",
)  # fmt: skip

_MARKETS = (
    _Market("ES", "es", 22, (
        _Place("Europe/Madrid", ("6", "7")),
        _Place("Atlantic/Canary", ("6",)),
    )),
    _Market("MX", "es", 15, (
        _Place("America/Mexico_City", ("55", "56")),
        _Place("America/Monterrey", ("81",)),
        _Place("America/Tijuana", ("664",)),
    )),
    _Market("AR", "es", 8, (
        _Place("America/Argentina/Buenos_Aires", ("911",)),
        _Place("America/Argentina/Cordoba", ("9351",)),
    )),
    _Market("CO", "es", 8, (_Place("America/Bogota", ("30", "31", "32")),)),
    _Market("US", "en", 32, (
        _Place("America/New_York", ("212", "646", "917", "617")),
        _Place("America/Chicago", ("312", "773")),
        _Place("America/Denver", ("303", "720")),
        _Place("America/Los_Angeles", ("213", "310", "415")),
    )),
    _Market("GB", "en", 15, (_Place("Europe/London", ("74", "75", "77", "78", "79")),)),
)  # fmt: skip

# --- what they buy, say and are said about --------------------------------------------------------

# category -> (English item, Spanish item, lowest price, highest price). Items are written as
# they read mid-sentence; `_capitalised` starts a sentence with them.
_CATALOGUE: dict[str, tuple[tuple[str, str, int, int], ...]] = {
    "shoes": (
        ("leather Oxford shoes", "zapatos Oxford de piel", 90, 220),
        ("suede loafers", "mocasines de ante", 70, 160),
    ),
    "accessories": (
        ("silk tie", "corbata de seda", 25, 70),
        ("leather belt", "cinturón de piel", 30, 90),
        ("cufflinks", "gemelos", 40, 150),
    ),
    "shirts": (
        ("Oxford cotton shirt", "camisa Oxford de algodón", 35, 90),
        ("linen shirt", "camisa de lino", 40, 95),
    ),
    "suits": (
        ("made-to-measure suit", "traje a medida", 450, 1800),
        ("wool blazer", "americana de lana", 180, 450),
    ),
    "dresses": (
        ("linen dress", "vestido de lino", 60, 180),
        ("evening dress", "vestido de fiesta", 150, 600),
    ),
    "outerwear": (
        ("wool overcoat", "abrigo de lana", 200, 650),
        ("trench coat", "gabardina", 150, 400),
    ),
    "knitwear": (
        ("merino jumper", "jersey de merino", 50, 140),
        ("cashmere cardigan", "cárdigan de cachemira", 120, 350),
    ),
    "bags": (
        ("leather tote bag", "bolso de piel", 90, 300),
        ("weekend bag", "bolsa de viaje", 120, 380),
    ),
    "tailoring": (("suit alterations", "arreglos de traje", 20, 80),),
}
_CATEGORIES = tuple(_CATALOGUE)

# (inbound question, reply, answered by the bot?) per language; {order} and {item} are filled in.
_CONVERSATIONS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "en": (
        ("Hi, where is my order {order}?",
         "Your order {order} left our warehouse yesterday and should arrive within 2 days.", True),
        ("What are your opening hours on Saturday?",
         "On Saturdays we are open from 10:00 to 20:00.", True),
        ("Do you have the {item} in another colour?",
         "Yes, it also comes in navy and in grey. Shall we keep one for you at the shop?", False),
        ("Can I return something I bought online at the shop?",
         "Yes, within 30 days with the receipt or the order number.", True),
        ("Is the new collection in yet?",
         "It arrives next week. We will let you know as soon as it is in.", False),
        ("Thanks, the {item} is perfect!",
         "Lovely to hear that, thank you for letting us know!", False),
    ),
    "es": (
        ("Hola, ¿dónde está mi pedido {order}?",
         "Tu pedido {order} salió ayer de nuestro almacén y llegará en unos 2 días.", True),
        ("¿Cuál es el horario del sábado?",
         "Los sábados abrimos de 10:00 a 20:00.", True),
        ("Hola, busco {item} en otro color. ¿Tienen?",
         "Sí, también en azul marino y en gris. ¿Te reservamos uno en la tienda?", False),
        ("¿Puedo devolver en la tienda algo que compré en línea?",
         "Sí, en un plazo de 30 días con el ticket o el número de pedido.", True),
        ("¿Ya llegó la nueva colección?",
         "Llega la semana que viene. Te avisamos en cuanto esté en tienda.", False),
        ("¡Gracias! Me encanta mi compra: {item}.",
         "¡Qué bien! Muchas gracias por contárnoslo.", False),
    ),
}  # fmt: skip
_COMPLAINTS: dict[str, tuple[str, ...]] = {
    "en": (
        "Order {order} arrived damaged and nobody answers my e-mails.",
        "I was charged twice for order {order}.",
        "Waited 40 minutes on the phone and the call was cut off.",
        "The {item} came apart after two weeks.",
    ),
    "es": (
        "El pedido {order} llegó dañado y nadie responde a mis correos.",
        "Me cobraron dos veces el pedido {order}.",
        "Esperé 40 minutos al teléfono y se cortó la llamada.",
        "Lo que compré ({item}) se estropeó a las dos semanas.",
    ),
}
_APOLOGIES = {
    "en": "We are very sorry. We have refunded the shipping and an agent will follow up today.",
    "es": "Lo sentimos mucho. Te hemos devuelto el envío y un agente te contactará hoy.",
}
_NOTES: dict[str, tuple[str, ...]] = {
    "en": (
        "Prefers to be contacted by e-mail in the evening.",
        "Interested in made-to-measure suits; send fabric samples.",
        "Asked about the loyalty programme.",
        "Likes navy and grey; size 40 jacket.",
        "Buying a gift for a wedding in spring.",
    ),
    "es": (
        "Prefiere que le contactemos por correo por la tarde.",
        "Le interesan los trajes a medida; enviar muestras de tela.",
        "Preguntó por el programa de fidelización.",
        "Le gustan el azul marino y el gris; talla 40 de chaqueta.",
        "Busca un regalo para una boda en primavera.",
    ),
}
_CALLBACK_SUMMARIES = {
    "en": "Call-back requested for {day} between {start} and {end} ({tz})",
    "es": "Llamada solicitada para el {day} entre las {start} y las {end} ({tz})",
}
_AGENTS = {
    "en": ("agent:Sarah Collins", "agent:Tom Baker", "agent:Priya Shah"),
    "es": ("agent:Lucía Ortega", "agent:Diego Fuentes", "agent:Carmen Vidal"),
}
_BOT = "bot:self-service"


# --- who is worth what ----------------------------------------------------------------------------


class _Profile(StrEnum):
    """The story behind a customer's figures; the tier itself is computed, never set."""

    TOP_SPENDER = "top_spender"  # big profit: meant to be CMV
    GROWING = "growing"  # modest profit, high potential: meant to be CMP
    STUDENT = "student"  # loses money today, potential above cost: CMP, and never BZ
    LOSS_MAKER = "loss_maker"  # costs more than they bring, no potential above it: BZ
    REGULAR = "regular"  # everyone else: STANDARD


_SEGMENTS: dict[_Profile, tuple[str, ...]] = {
    _Profile.TOP_SPENDER: ("premium", "executive"),
    _Profile.GROWING: ("young_professional", "growing_business"),
    _Profile.STUDENT: ("student",),
    _Profile.LOSS_MAKER: ("bargain_hunter", "dormant"),
    _Profile.REGULAR: ("regular", "family", "occasional", "young_professional"),
}
# (low, medium, high) weights of churn risk per profile: a few valuable customers are at risk,
# which is what service recovery (docs/product.md) is about.
_CHURN_WEIGHTS: dict[_Profile, tuple[int, int, int]] = {
    _Profile.TOP_SPENDER: (7, 3, 0),  # the high ones are picked by `_put_at_risk`
    _Profile.GROWING: (5, 3, 2),
    _Profile.STUDENT: (5, 4, 1),
    _Profile.LOSS_MAKER: (2, 4, 4),
    _Profile.REGULAR: (6, 3, 1),
}


# How each profile's consent tends to go, as weights of these stories in this order; every
# profile, so every tier, has every story.
_STORIES = (
    ConsentStory.CONFIRMED,
    ConsentStory.TOPICS,
    ConsentStory.PENDING,
    ConsentStory.COMPLAINED,
    ConsentStory.STOPPED,
    ConsentStory.UNSUBSCRIBED,
    ConsentStory.NEVER_ASKED,
)
_STORY_WEIGHTS: dict[_Profile, tuple[int, int, int, int, int, int, int]] = {
    _Profile.TOP_SPENDER: (40, 10, 10, 15, 8, 7, 10),
    _Profile.GROWING: (35, 10, 15, 5, 10, 5, 20),
    _Profile.STUDENT: (30, 15, 20, 3, 10, 5, 17),
    _Profile.LOSS_MAKER: (25, 5, 15, 15, 15, 10, 15),
    _Profile.REGULAR: (30, 8, 15, 4, 8, 8, 27),
}


def _story(rng: random.Random, person: _Person) -> ConsentStory:
    return rng.choices(_STORIES, _STORY_WEIGHTS[person.profile])[0]


def _profile_mix(customers: int) -> list[_Profile]:
    """How many of each profile, in plausible proportions; at least one of each if there is room."""
    counts = {
        _Profile.TOP_SPENDER: max(1, round(customers * 0.05)),
        _Profile.GROWING: max(1, round(customers * 0.07)),
        _Profile.STUDENT: max(1, round(customers * 0.03)),
        _Profile.LOSS_MAKER: max(1, round(customers * 0.08)),
    }
    mix = [profile for profile, count in counts.items() for _ in range(count)][:customers]
    return mix + [_Profile.REGULAR] * (customers - len(mix))


@dataclass(slots=True)
class _Person:
    """Everything the demo knows about one customer before it touches the database."""

    number: int
    profile: _Profile
    market: _Market
    timezone: str
    name: str
    email: str
    phone: str | None  # international format, as a person would type it
    telegram: str | None
    webchat: str | None
    revenue_cents: int
    cost_cents: int
    potential_cents: int
    attributes: dict[str, Any]

    @property
    def external_id(self) -> str:
        return f"{DEMO_PREFIX}{self.number:04d}"

    @property
    def language(self) -> str:
        return self.market.language

    def fields(self) -> dict[str, Any]:
        """The loosely typed input `parse_customer` takes, as a CSV row or an API body would be."""
        fields: dict[str, Any] = {
            "external_id": self.external_id,
            "name": self.name,
            "email": self.email,
            "phone": self.phone,
            "telegram": self.telegram,
            "country": self.market.country,
            "timezone": self.timezone,
            "language": self.language,
            "revenue": _units(self.revenue_cents),
            "cost_to_serve": _units(self.cost_cents),
            "potential_value": _units(self.potential_cents),
        }
        return {**fields, **self.attributes}


def _units(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _cents(rng: random.Random, low: float, high: float) -> int:
    return round(rng.uniform(low, high) * 100)


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if ch.isascii() and ch.isalnum()).lower()


def _mobile_number(
    rng: random.Random, market: _Market, place: _Place, taken: set[str]
) -> str | None:
    """A mobile number `phonenumbers` accepts for the market's country, not used by anybody else.

    Candidates are drawn at random with a local prefix and kept only if valid, so the demo never
    relies on hand-written numbers that a metadata update could invalidate.
    """
    example = phonenumbers.example_number_for_type(
        market.country, phonenumbers.PhoneNumberType.MOBILE
    )
    if example is None:
        return None
    length = len(phonenumbers.national_significant_number(example))
    code = phonenumbers.country_code_for_region(market.country)
    for _ in range(50):
        prefix = rng.choice(place.mobile_prefixes)
        digits = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix)))
        number = phonenumbers.parse(f"+{code}{digits}")
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        if (
            phonenumbers.is_valid_number(number)
            and phonenumbers.region_code_for_number(number) == market.country
            and e164 not in taken
        ):
            taken.add(e164)
            return str(
                phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
            )
    return None


def _figures(rng: random.Random, profile: _Profile) -> tuple[int, int, int]:
    """(revenue, cost to serve, potential value) in cents; top spenders' profit is scaled later."""
    match profile:
        case _Profile.GROWING:
            revenue = _cents(rng, 800, 5_000)
            cost = round(revenue * rng.uniform(0.6, 0.9))
            potential = _cents(rng, 8_000, 40_000)
        case _Profile.STUDENT:
            revenue = _cents(rng, 50, 400)
            cost = revenue + _cents(rng, 100, 600)
            potential = _cents(rng, 5_000, 20_000)
        case _Profile.LOSS_MAKER:
            revenue = _cents(rng, 0, 300)
            cost = revenue + _cents(rng, 150, 1_500)
            potential = round(cost * rng.uniform(0, 0.8))
        case _Profile.REGULAR if rng.random() < 0.12:
            # Costs a little more than they bring, but could bring more than they cost: not BZ.
            revenue = _cents(rng, 150, 800)
            cost = revenue + _cents(rng, 20, 200)
            potential = cost + _cents(rng, 50, 600)
        case _Profile.REGULAR:
            revenue = _cents(rng, 300, 4_000)
            cost = round(revenue * rng.uniform(0.55, 0.95))
            # Below twice the profit: a regular customer is not a growth prospect.
            potential = round((revenue - cost) * rng.uniform(0.3, 1.8))
        case _Profile.TOP_SPENDER:
            revenue, cost, potential = 0, 0, 0
    return revenue, cost, potential


def _scale_top_spenders(rng: random.Random, people: Sequence[_Person]) -> None:
    """Size the top spenders' profit so that exactly they are CMV under the default rules.

    CMV takes customers by profit until the ones above have made 80% of all positive profit.
    With `others` the positive profit of everybody else, `smallest` the share of the top
    spenders' total `B` that the smallest of them makes, `B` is chosen so the 80% line falls
    half-way through the smallest top spender's profit: B - smallest*B/2 = 0.8 * (B + others).
    Then every top spender starts below the line and the next customer starts above it, for any
    number of customers (a fixed share would leave the smallest ones out of a large demo).
    """
    top = [p for p in people if p.profile is _Profile.TOP_SPENDER]
    others = sum(
        max(p.revenue_cents - p.cost_cents, 0)
        for p in people
        if p.profile is not _Profile.TOP_SPENDER
    )
    weights = [rng.uniform(0.6, 1.4) for _ in top]
    smallest = min(weights) / sum(weights)
    line = _RULES.cmv_profit_share
    # With few top spenders the smallest makes so much that any B of at least line/(1 - line)
    # times the others works; the floor keeps the divisor positive, and still above
    # 1 - line - smallest, the bound for the smallest top spender to start below the line.
    total = line * (others or 1_000_000) / max(1 - line - smallest / 2, (1 - line) / 5)
    for person, weight in zip(top, weights, strict=True):
        profit = round(total * weight / sum(weights))
        margin = rng.uniform(0.5, 0.75)
        person.revenue_cents = round(profit / margin)
        person.cost_cents = person.revenue_cents - profit
        person.potential_cents = round(profit * rng.uniform(0.8, 1.6))


def _attributes(rng: random.Random, profile: _Profile) -> dict[str, Any]:
    """Custom attributes later features segment on (churn risk, categories, balances)."""
    rich = profile is _Profile.TOP_SPENDER or rng.random() < 0.04
    balance = rng.uniform(25_000, 120_000) if rich else rng.uniform(0, 22_000)
    deposit = rng.uniform(5_000, 15_000) if rich else rng.uniform(50, 4_500)
    if profile is _Profile.STUDENT:
        balance, deposit = rng.uniform(0, 1_500), rng.uniform(20, 300)
    return {
        "churn_risk": rng.choices(("low", "medium", "high"), _CHURN_WEIGHTS[profile])[0],
        "segment": rng.choice(_SEGMENTS[profile]),
        "preferred_categories": ",".join(rng.sample(_CATEGORIES, rng.randint(1, 3))),
        "account_balance": round(balance, 2),
        "avg_deposit": round(deposit, 2),
    }


def _put_at_risk(people: Sequence[_Person]) -> None:
    """Mark every fifth top spender (at least one) as at high risk of leaving.

    Service recovery (docs/product.md) needs an at-risk valuable customer to try it on, whatever the
    dice say.
    """
    top = [p for p in people if p.profile is _Profile.TOP_SPENDER]
    for person in top[::5]:
        person.attributes["churn_risk"] = "high"


def _plan(customers: int, seed: int) -> list[_Person]:
    """The whole data set, decided before any database work, so every run decides the same."""
    rng = random.Random(seed)
    profiles = _profile_mix(customers)
    rng.shuffle(profiles)
    phones: set[str] = set()
    telegrams: set[str] = set()
    people: list[_Person] = []
    for number, profile in enumerate(profiles, start=1):
        market = rng.choices(_MARKETS, [m.weight for m in _MARKETS])[0]
        place = rng.choice(market.places)
        spanish = market.language == "es"
        first = rng.choice(_SPANISH_FIRST if spanish else _ENGLISH_FIRST)
        surnames = rng.sample(_SPANISH_SURNAMES, 2) if spanish else [rng.choice(_ENGLISH_SURNAMES)]
        # The number in the address keeps two namesakes apart and never collides (no surname
        # ends in a digit).
        email = f"{_ascii(first)}.{_ascii(surnames[0])}{number}@{rng.choice(_EMAIL_DOMAINS)}"
        phone = None
        if profile is _Profile.TOP_SPENDER or rng.random() < 0.85:
            phone = _mobile_number(rng, market, place, phones)
        telegram = None
        if rng.random() < 0.3:
            telegram = str(rng.randint(100_000_000, 7_999_999_999))
            while telegram in telegrams:
                telegram = str(int(telegram) + 1)
            telegrams.add(telegram)
        webchat = (
            f"demo-web-{number:04d}-{rng.getrandbits(40):010x}" if rng.random() < 0.1 else None
        )
        revenue, cost, potential = _figures(rng, profile)
        people.append(
            _Person(
                number=number,
                profile=profile,
                market=market,
                timezone=place.timezone,
                name=" ".join((first, *surnames)),
                email=email,
                phone=phone,
                telegram=telegram,
                webchat=webchat,
                revenue_cents=revenue,
                cost_cents=cost,
                potential_cents=potential,
                attributes=_attributes(rng, profile),
            )
        )
    _scale_top_spenders(rng, people)
    _put_at_risk(people)
    return people


# --- the timeline ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Event:
    kind: InteractionKind
    summary: str
    occurred_at: datetime
    channel: str | None = None
    actor: str | None = None
    data: dict[str, Any] | None = None


def _moment(rng: random.Random, person: _Person, now: datetime, days_ago: float) -> datetime:
    """A UTC instant about `days_ago` before `now`, in the customer's local waking hours."""
    zone = ZoneInfo(person.timezone)
    day = (now - timedelta(days=days_ago)).astimezone(zone).date()
    local = datetime.combine(day, time(rng.randint(8, 21), rng.randint(0, 59)), zone)
    moment = local.astimezone(UTC)
    return moment if moment < now else moment - timedelta(days=1)


def _channels(person: _Person) -> list[str]:
    # Customers who gave a chat identity mostly use it; everybody has e-mail.
    channels = ["email"]
    if person.phone:
        channels += ["sms", "sms"]
    if person.telegram:
        channels += ["telegram"] * 3
    if person.webchat:
        channels += ["webchat"] * 3
    return channels


def _timeline(
    rng: random.Random, person: _Person, now: datetime, *, recent_complaint: bool = False
) -> list[_Event]:
    """A few months of a customer's life with the shop, oldest first; with `recent_complaint`,
    one complaint falls within the marketing cooldown before `now`."""
    lang = person.language
    english = lang == "en"
    agents = _AGENTS[lang]
    categories = str(person.attributes["preferred_categories"]).split(",")
    events: list[_Event] = []
    purchases: list[tuple[float, str, str]] = []  # (days ago, order id, item in their language)

    buys = {
        _Profile.TOP_SPENDER: (2, 4),
        _Profile.GROWING: (1, 3),
        _Profile.STUDENT: (1, 1),
        _Profile.LOSS_MAKER: (0, 1),
        _Profile.REGULAR: (1, 3),
    }[person.profile]
    for _ in range(rng.randint(*buys)):
        days_ago = rng.uniform(5, _LATEST_DAY)
        category = rng.choice(categories)
        english_item, spanish_item, low, high = rng.choice(_CATALOGUE[category])
        item = english_item if english else spanish_item
        quantity = 1 if rng.random() < 0.85 else 2
        amount = round(rng.uniform(low, high) * quantity, 2)
        order = f"SO-{rng.randint(100_000, 999_999)}"
        purchases.append((days_ago, order, item))
        label = "Purchase" if english else "Compra"
        events.append(
            _Event(
                InteractionKind.PURCHASE,
                f"{label}: {_capitalised(item)} ×{quantity} ({amount:.2f})",
                _moment(rng, person, now, days_ago),
                data={
                    "order_id": order,
                    "item": item,
                    "category": category,
                    "quantity": quantity,
                    "amount": amount,
                },
            )
        )

    def about_an_order() -> tuple[float, str, str]:
        # Questions and complaints follow a purchase by a few days, when there is one.
        if purchases:
            days_ago, order, item = rng.choice(purchases)
            return max(days_ago - rng.uniform(1, 4), 0.2), order, item
        english_item, spanish_item, _, _ = rng.choice(_CATALOGUE[rng.choice(categories)])
        item = english_item if english else spanish_item
        return rng.uniform(1, _LATEST_DAY), f"SO-{rng.randint(100_000, 999_999)}", item

    chats = 3 if person.profile is _Profile.LOSS_MAKER else 2
    for _ in range(rng.randint(1, chats)):
        days_ago, order, item = about_an_order()
        question, answer, by_bot = rng.choice(_CONVERSATIONS[lang])
        channel = rng.choice(_channels(person))
        asked = _moment(rng, person, now, days_ago)
        events.append(
            _Event(
                InteractionKind.MESSAGE_IN,
                question.format(order=order, item=item),
                asked,
                channel=channel,
            )
        )
        delay = (
            timedelta(seconds=rng.randint(2, 20))
            if by_bot
            else timedelta(minutes=rng.randint(3, 90))
        )
        events.append(
            _Event(
                InteractionKind.MESSAGE_OUT,
                answer.format(order=order, item=item),
                min(asked + delay, now),
                channel=channel,
                actor=_BOT if by_bot else rng.choice(agents),
            )
        )

    if rng.random() < 0.45:
        events.append(
            _Event(
                InteractionKind.NOTE,
                rng.choice(_NOTES[lang]),
                _moment(rng, person, now, rng.uniform(1, _LATEST_DAY)),
                actor=rng.choice(agents),
            )
        )

    complaint_odds = 0.45 if person.profile is _Profile.LOSS_MAKER else 0.08
    if recent_complaint or rng.random() < complaint_odds:
        days_ago, order, item = about_an_order()
        if recent_complaint:
            days_ago = rng.uniform(*_RECENT_COMPLAINT_DAYS)
        channel = rng.choice(_channels(person))
        filed = _moment(rng, person, now, days_ago)
        events.append(
            _Event(
                InteractionKind.COMPLAINT,
                rng.choice(_COMPLAINTS[lang]).format(order=order, item=item),
                filed,
                channel=channel,
                data={"order_id": order},
            )
        )
        events.append(
            _Event(
                InteractionKind.MESSAGE_OUT,
                _APOLOGIES[lang],
                min(filed + timedelta(minutes=rng.randint(10, 240)), now),
                channel=channel,
                actor=rng.choice(agents),
            )
        )

    if person.phone and rng.random() < 0.12:
        requested = _moment(rng, person, now, rng.uniform(2, _LATEST_DAY))
        zone = ZoneInfo(person.timezone)
        local_day = (requested + timedelta(days=1)).astimezone(zone).date()
        start = datetime.combine(local_day, time(rng.choice((9, 10, 11, 16, 17, 18))), zone)
        end = start + timedelta(hours=1)
        events.append(
            _Event(
                InteractionKind.CALLBACK,
                _CALLBACK_SUMMARIES[lang].format(
                    day=local_day.isoformat(),
                    start=f"{start:%H:%M}",
                    end=f"{end:%H:%M}",
                    tz=person.timezone,
                ),
                requested,
                channel=rng.choice(("webchat", "sms")) if person.webchat else "sms",
                data={
                    "window_start": start.astimezone(UTC).isoformat(),
                    "window_end": end.astimezone(UTC).isoformat(),
                    "timezone": person.timezone,
                    "status": rng.choice(("done", "done", "done", "no_answer")),
                    "agent": rng.choice(agents),
                },
            )
        )

    events.sort(key=lambda event: event.occurred_at)
    return events


# --- loading --------------------------------------------------------------------------------------


async def load_demo_data(
    session: AsyncSession,
    *,
    default_region: str = "US",
    customers: int = 300,
    seed: int = 7,
    now: datetime | None = None,
    topics: Sequence[str] = DEFAULT_TOPICS,
) -> DemoSummary:
    """Create or update the demo customers, give new ones a timeline and a consent history, and
    recompute every tier.

    Only flushes: the caller commits (or rolls back, and nothing is left of a failed load).
    `default_region` is the phone region for input without a country (every demo customer has
    one); `now` (aware) anchors the timeline's last 180 days; `topics` are those customers may
    choose in the preference centre. Raises `IdentityConflict` if a non-demo customer already
    holds a demo e-mail, phone or Telegram id.
    """
    if customers < 1:
        raise ValueError("the demo needs at least one customer")
    if now is not None and now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    now = now or datetime.now(UTC)
    created = updated = interactions = 0
    events_before = await _consent_events(session)
    for person in _plan(customers, seed):
        record = parse_customer(person.fields(), default_region)
        customer, is_new = await upsert_customer(session, record)
        if not is_new:
            updated += 1
            continue
        created += 1
        if person.webchat:
            session.add(
                Identity(
                    customer_id=customer.id,
                    kind=IdentityKind.WEBCHAT.value,
                    value=person.webchat,
                )
            )
        # Generators per customer, so whether earlier customers were new does not change them.
        rng = random.Random(f"sastre-demo:{seed}:{person.number}")
        consent_rng = random.Random(f"sastre-demo-consent:{seed}:{person.number}")
        story = _story(consent_rng, person)
        recent_complaint = story is ConsentStory.COMPLAINED
        for event in _timeline(rng, person, now, recent_complaint=recent_complaint):
            await add_interaction(
                session,
                customer.id,
                event.kind,
                event.summary,
                channel=event.channel,
                actor=event.actor,
                data=event.data,
                occurred_at=event.occurred_at,
                # Written together by the next flush: one statement for the whole timeline.
                flush=False,
            )
            interactions += 1
        reach = Reach(
            person.language, phone=person.phone is not None, telegram=bool(person.telegram)
        )
        plan = plan_consent(story, reach, consent_rng, now, topics)
        await write_consent(session, customer.id, plan)
    await session.flush()  # the last timeline, before the recompute reads the tables
    await recompute_tiers(session, _RULES, now)
    return DemoSummary(
        created=created,
        updated=updated,
        interactions=interactions,
        consent_events=await _consent_events(session) - events_before,
    )


async def _consent_events(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(ConsentEvent)) or 0)
