"""Pages for customers, reached through signed links: unsubscribe and the preference centre.

No login and no cookie: the signed link alone identifies the customer (RFC 8058 requires the
one-click POST to work that way). Every change lands in the consent ledger or the audit log
with its evidence (IP address, user agent, the wording version shown). Spanish and English.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape
from multidict import MultiDictProxy

from consent.ledger import current_consents
from consent.preferences import DAYS, InvalidPreferences, load_preferences
from consent.tokens import BadToken, ConfirmLink, LinkSigner, PreferenceLink, UnsubscribeLink
from consent.types import Channel, ConsentStatus, Purpose, Source
from crm_core.customers import CustomerNotFound, get_customer
from sastre.appkeys import READER, SESSIONMAKER, SETTINGS
from sastre.operations import (
    Confirmation,
    do_confirm_consent,
    do_unsubscribe,
    do_update_preferences,
    do_withdraw_consents,
)

__all__ = ["WORDING_VERSION", "routes", "signer"]

routes = web.RouteTableDef()
WORDING_VERSION: Final = "2026-11-preferences-v1"
CHANNEL_SLOTS: Final = 3
HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_templates = Environment(
    loader=PackageLoader("sastre", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

TEXTS: Final[Mapping[str, Mapping[str, Any]]] = {
    "en": {
        "unsubscribe_title": "Unsubscribe",
        "confirm_title": "Confirm your subscription",
        "confirm_question": "Confirm that you want to receive {what} by {channel}.",
        "confirm_button": "Yes, confirm",
        "confirmed": "Thank you: your subscription is confirmed. You can unsubscribe at any time.",
        "nothing_to_confirm": "There is nothing waiting for your confirmation.",
        "unsubscribe_question": "Stop receiving {what} by {channel}?",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed": "Done: you will not receive {what} by {channel} any more.",
        "all_marketing": "marketing messages",
        "topic_messages": "messages about “{topic}”",
        "manage_preferences": "Manage all your contact preferences",
        "preferences_title": "Your contact preferences",
        "channels": "How would you like us to contact you?",
        "choice": ["First choice", "Second choice", "Third choice"],
        "topics": "What would you like to hear about?",
        "window": "When may we contact you?",
        "window_hint": "Your local time. Leave the times empty for any reasonable hour.",
        "from": "From",
        "to": "To",
        "language": "Language",
        "save": "Save my preferences",
        "saved": "Your preferences are saved.",
        "current_consent": "What you have agreed to",
        "no_consent": "You have not agreed to any marketing messages.",
        "withdraw_hint": "You can withdraw every marketing consent at once. We will still answer "
        "your own questions.",
        "withdraw_button": "Withdraw all my consents",
        "withdrawn": "All your marketing consents are withdrawn.",
        "invalid": "Please check “{field}”: {reason}",
        "status": {
            "granted": "{purpose} by {channel}: yes",
            "pending": "{purpose} by {channel}: waiting for your confirmation",
            "revoked": "{purpose} by {channel}: no",
        },
        "purpose_names": {"marketing": "Marketing", "service": "Service messages"},
        "channel_names": {
            "email": "E-mail",
            "sms": "SMS",
            "telegram": "Telegram",
            "webchat": "Web chat",
            "voice": "Phone call",
        },
        "topic_names": {
            "new-products": "New products",
            "offers": "Offers",
            "newsletter": "Newsletter",
        },
        "day_names": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
    },
    "es": {
        "unsubscribe_title": "Darse de baja",
        "confirm_title": "Confirme su suscripción",
        "confirm_question": "Confirme que desea recibir {what} por {channel}.",
        "confirm_button": "Sí, confirmo",
        "confirmed": "Gracias: su suscripción está confirmada. Puede darse de baja cuando quiera.",
        "nothing_to_confirm": "No hay nada pendiente de su confirmación.",
        "unsubscribe_question": "¿Dejar de recibir {what} por {channel}?",
        "unsubscribe_button": "Darme de baja",
        "unsubscribed": "Hecho: ya no recibirá {what} por {channel}.",
        "all_marketing": "mensajes comerciales",
        "topic_messages": "mensajes sobre «{topic}»",
        "manage_preferences": "Gestionar todas sus preferencias de contacto",
        "preferences_title": "Sus preferencias de contacto",
        "channels": "¿Cómo prefiere que le contactemos?",
        "choice": ["Primera opción", "Segunda opción", "Tercera opción"],
        "topics": "¿Sobre qué le gustaría recibir información?",
        "window": "¿Cuándo podemos contactarle?",
        "window_hint": "En su hora local. Deje las horas vacías para cualquier hora razonable.",
        "from": "Desde",
        "to": "Hasta",
        "language": "Idioma",
        "save": "Guardar mis preferencias",
        "saved": "Sus preferencias se han guardado.",
        "current_consent": "Lo que ha autorizado",
        "no_consent": "No ha autorizado ningún mensaje comercial.",
        "withdraw_hint": "Puede retirar todos sus consentimientos comerciales a la vez. Seguiremos "
        "respondiendo a sus consultas.",
        "withdraw_button": "Retirar todos mis consentimientos",
        "withdrawn": "Se han retirado todos sus consentimientos comerciales.",
        "invalid": "Revise «{field}»: {reason}",
        "status": {
            "granted": "{purpose} por {channel}: sí",
            "pending": "{purpose} por {channel}: pendiente de su confirmación",
            "revoked": "{purpose} por {channel}: no",
        },
        "purpose_names": {
            "marketing": "Comunicaciones comerciales",
            "service": "Avisos de servicio",
        },
        "channel_names": {
            "email": "correo electrónico",
            "sms": "SMS",
            "telegram": "Telegram",
            "webchat": "chat web",
            "voice": "llamada",
        },
        "topic_names": {
            "new-products": "Novedades",
            "offers": "Ofertas",
            "newsletter": "Boletín",
        },
        "day_names": ["lun", "mar", "mié", "jue", "vie", "sáb", "dom"],
    },
}


def signer(request: web.Request) -> LinkSigner:
    return LinkSigner(request.app[SETTINGS].secret())


def _bad_link(reason: str) -> web.Response:
    return web.Response(status=400, text=f"{reason}\n", content_type="text/plain")


def _page(template: str, status: int = 200, **context: Any) -> web.Response:
    body = _templates.get_template(template).render(**context)
    return web.Response(text=body, content_type="text/html", status=status, headers=HEADERS)


def _evidence(request: web.Request, **extra: Any) -> dict[str, Any]:
    return {
        "ip": request.remote,
        "user_agent": request.headers.get("User-Agent", ""),
        "wording_version": WORDING_VERSION,
        **extra,
    }


async def _language(request: web.Request, customer_id: int) -> str:
    async with request.app[READER]() as session:
        customer = await get_customer(session, customer_id)
        preferences = await load_preferences(session, customer.id)
    language = preferences.language or customer.language or request.app[SETTINGS].default_language
    return language if language in TEXTS else "en"


# --- unsubscribe (RFC 2369 / RFC 8058) ----------------------------------------------------------


def _read_unsubscribe(request: web.Request) -> UnsubscribeLink:
    return signer(request).read_unsubscribe(request.match_info["token"])


async def _unsubscribe_page(
    request: web.Request, link: UnsubscribeLink, done: bool
) -> web.Response:
    lang = await _language(request, link.customer_id)
    t = TEXTS[lang]
    what = (
        t["topic_messages"].format(topic=t["topic_names"].get(link.topic, link.topic))
        if link.topic
        else t["all_marketing"]
    )
    channel = t["channel_names"][link.channel.value]
    texts = {
        **t,
        "unsubscribe_question": t["unsubscribe_question"].format(what=what, channel=channel),
        "unsubscribed": t["unsubscribed"].format(what=what, channel=channel),
    }
    preferences = signer(request).preferences_token(PreferenceLink(link.customer_id, link.channel))
    return _page(
        "unsubscribe.html",
        lang=lang,
        title=t["unsubscribe_title"],
        t=texts,
        done=done,
        preferences_url=f"/preferences/{preferences}",
    )


@routes.get("/u/{token}")
async def unsubscribe_form(request: web.Request) -> web.Response:
    try:
        link = _read_unsubscribe(request)
        return await _unsubscribe_page(request, link, done=False)
    except (BadToken, CustomerNotFound):
        return _bad_link("This unsubscribe link is not valid. / Este enlace no es válido.")


@routes.post("/u/{token}")
async def unsubscribe(request: web.Request) -> web.Response:
    """One click, no cookie, no login; idempotent: a second click changes nothing more."""
    try:
        link = _read_unsubscribe(request)
    except BadToken:
        return _bad_link("This unsubscribe link is not valid. / Este enlace no es válido.")
    form = await request.post()
    one_click = form.get("List-Unsubscribe") == "One-Click"
    try:
        await do_unsubscribe(
            request.app[SESSIONMAKER],
            link.customer_id,
            link.channel,
            topic=link.topic,
            evidence=_evidence(request, method="one-click" if one_click else "page"),
        )
    except CustomerNotFound:
        return _bad_link("This unsubscribe link is not valid. / Este enlace no es válido.")
    return await _unsubscribe_page(request, link, done=True)


# --- double opt-in confirmation ------------------------------------------------------------------


def _what(t: Mapping[str, Any], topic: str) -> str:
    if topic:
        return str(t["topic_messages"].format(topic=t["topic_names"].get(topic, topic)))
    return str(t["all_marketing"])


async def _status(request: web.Request, link: ConfirmLink) -> str | None:
    """The consent the link asks to confirm, as it stands on the live customer (a link sent
    before a merge speaks for the survivor)."""
    async with request.app[READER]() as session:
        customer = await get_customer(session, link.customer_id)
        rows = await current_consents(session, customer.id)
    key = (link.channel.value, Purpose.MARKETING.value, link.topic)
    return next((s.status for s, _ in rows if (s.channel, s.purpose, s.topic) == key), None)


async def _confirm_page(
    request: web.Request, link: ConfirmLink, status: str | None
) -> web.Response:
    """Pending: the question; granted: confirmed (however many clicks it took); else nothing."""
    lang = await _language(request, link.customer_id)
    t = TEXTS[lang]
    question = t["confirm_question"].format(
        what=_what(t, link.topic), channel=t["channel_names"][link.channel.value]
    )
    done = status == ConsentStatus.GRANTED.value
    return _page(
        "confirm.html",
        lang=lang,
        title=t["confirm_title"],
        t={**t, "confirm_question": question},
        done=done,
        nothing=not done and status != ConsentStatus.PENDING.value,
    )


@routes.get("/c/{token}")
async def confirm_form(request: web.Request) -> web.Response:
    try:
        link = signer(request).read_confirm(request.match_info["token"])
        return await _confirm_page(request, link, await _status(request, link))
    except (BadToken, CustomerNotFound):
        return _bad_link("This confirmation link is not valid. / Este enlace no es válido.")


@routes.post("/c/{token}")
async def confirm(request: web.Request) -> web.Response:
    """The click in the confirmation message: the second step of double opt-in. Idempotent: a
    second click, even one racing the first, is told the subscription is confirmed."""
    try:
        link = signer(request).read_confirm(request.match_info["token"])
        outcome = await do_confirm_consent(
            request.app[SESSIONMAKER],
            link.customer_id,
            link.channel,
            topic=link.topic,
            evidence=_evidence(request, method="confirmation link"),
        )
        confirmed = outcome is not Confirmation.NOTHING_PENDING
        return await _confirm_page(request, link, ConsentStatus.GRANTED if confirmed else None)
    except (BadToken, CustomerNotFound):
        return _bad_link("This confirmation link is not valid. / Este enlace no es válido.")


# --- the preference centre ----------------------------------------------------------------------


def _read_preferences(request: web.Request) -> PreferenceLink:
    return signer(request).read_preferences(request.match_info["token"])


async def _preferences_page(
    request: web.Request, link: PreferenceLink, notice: str = "", status: int = 200
) -> web.Response:
    lang = await _language(request, link.customer_id)
    t = TEXTS[lang]
    async with request.app[READER]() as session:
        customer = await get_customer(session, link.customer_id)
        preferences = await load_preferences(session, customer.id)
        rows = await current_consents(session, customer.id)
    preferred = [c.value for c in preferences.channels][:CHANNEL_SLOTS]
    preferred += [""] * (CHANNEL_SLOTS - len(preferred))
    consent_lines = [
        t["status"][s.status].format(
            purpose=t["purpose_names"][s.purpose]
            + (f" ({t['topic_names'].get(s.topic, s.topic)})" if s.topic else ""),
            channel=t["channel_names"][s.channel],
        )
        for s, _ in rows
    ]
    token = request.match_info["token"]
    return _page(
        "preferences.html",
        status=status,
        lang=lang,
        title=t["preferences_title"],
        t=t,
        notice=notice,
        channels=[c.value for c in Channel],
        channel_slots=CHANNEL_SLOTS,
        preferred=preferred,
        topics=request.app[SETTINGS].topic_list,
        chosen_topics=set(preferences.topics),
        days=DAYS,
        chosen_days={DAYS[d] for d in (preferences.window_days or range(7))},
        window_start=preferences.window_start.strftime("%H:%M") if preferences.window_start else "",
        window_end=preferences.window_end.strftime("%H:%M") if preferences.window_end else "",
        language=preferences.language or customer.language or lang,
        consent_lines=consent_lines,
        withdraw_url=f"/preferences/{token}/withdraw",
    )


def _changes_from_form(form: MultiDictProxy[Any], topics: list[str]) -> dict[str, Any]:
    channels = [str(form.get(f"channel_{i}", "")) for i in range(CHANNEL_SLOTS)]
    start, end = str(form.get("start", "")).strip(), str(form.get("end", "")).strip()
    window = None
    if start or end:
        window = {"days": [str(d) for d in form.getall("day", [])], "start": start, "end": end}
    return {
        "channels": [c for c in channels if c],
        "topics": [str(t) for t in form.getall("topic", []) if str(t) in topics],
        "window": window,
        "language": str(form.get("language", "")) or None,
    }


@routes.get("/preferences/{token}")
async def preference_centre(request: web.Request) -> web.Response:
    try:
        return await _preferences_page(request, _read_preferences(request))
    except (BadToken, CustomerNotFound):
        return _bad_link("This link is not valid. / Este enlace no es válido.")


@routes.post("/preferences/{token}")
async def save_preferences(request: web.Request) -> web.Response:
    try:
        link = _read_preferences(request)
        form = await request.post()
        changes = _changes_from_form(form, request.app[SETTINGS].topic_list)
        await do_update_preferences(
            request.app[SESSIONMAKER],
            link.customer_id,
            changes,
            actor="customer",
            source=Source.PREFERENCE_CENTRE,
            evidence=_evidence(request, link_channel=link.channel.value),
            proven_channel=link.channel,
        )
    except (BadToken, CustomerNotFound):
        return _bad_link("This link is not valid. / Este enlace no es válido.")
    except InvalidPreferences as e:
        lang = await _language(request, link.customer_id)
        notice = TEXTS[lang]["invalid"].format(field=e.field, reason=e.reason)
        return await _preferences_page(request, link, notice, status=400)
    lang = await _language(request, link.customer_id)
    return await _preferences_page(request, link, TEXTS[lang]["saved"])


@routes.post("/preferences/{token}/withdraw")
async def withdraw(request: web.Request) -> web.Response:
    try:
        link = _read_preferences(request)
        await do_withdraw_consents(
            request.app[SESSIONMAKER],
            link.customer_id,
            actor="customer",
            source=Source.PREFERENCE_CENTRE,
            evidence=_evidence(request, link_channel=link.channel.value),
        )
    except (BadToken, CustomerNotFound):
        return _bad_link("This link is not valid. / Este enlace no es válido.")
    lang = await _language(request, link.customer_id)
    return await _preferences_page(request, link, TEXTS[lang]["withdrawn"])
