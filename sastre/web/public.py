"""Pages for customers, reached through signed links: unsubscribe and the preference centre.

No login and no cookie: the signed link alone identifies the customer (RFC 8058 requires the
one-click POST to work that way). Every change lands in the consent ledger or the audit log
with its evidence (IP address, user agent, the wording version shown). The sentences are in the
templates (`_("key")`, Jinja2's i18n extension) and the catalogue (`wording`), in the customer's
language: a third language is a catalogue file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web
from babel import Locale
from babel.dates import get_day_names
from jinja2 import Environment, PackageLoader, pass_context, select_autoescape
from jinja2.runtime import Context
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
from sastre.web.form_input import read_form
from wording import (
    FALLBACK_LANGUAGE,
    N_,
    available_languages,
    pick_language,
    translate,
    translations,
)

__all__ = ["WORDING_VERSION", "routes", "signer"]

routes = web.RouteTableDef()
WORDING_VERSION: Final = "2026-11-preferences-v1"
HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

# Keys chosen at run time, marked for `pybabel extract` (the sentences are in the templates).
_CHOICES: Final = (
    N_("preferences.choice_1"),
    N_("preferences.choice_2"),
    N_("preferences.choice_3"),
)
CHANNEL_SLOTS: Final = len(_CHOICES)
_CHANNEL_NAMES: Final[Mapping[str, str]] = {
    Channel.EMAIL: N_("page.channel.email"),
    Channel.SMS: N_("page.channel.sms"),
    Channel.TELEGRAM: N_("page.channel.telegram"),
    Channel.WEBCHAT: N_("page.channel.webchat"),
    Channel.VOICE: N_("page.channel.voice"),
}
_PURPOSE_NAMES: Final[Mapping[str, str]] = {
    Purpose.MARKETING: N_("purpose.marketing"),
    Purpose.SERVICE: N_("purpose.service"),
}
_STATUS_LINES: Final[Mapping[str, str]] = {
    ConsentStatus.GRANTED: N_("consent.granted"),
    ConsentStatus.PENDING: N_("consent.pending"),
    ConsentStatus.REVOKED: N_("consent.revoked"),
}
# The default topics (SASTRE_TOPICS); a topic added in the settings is shown as it is named.
_TOPIC_NAMES: Final[Mapping[str, str]] = {
    "new-products": N_("topic.new-products"),
    "offers": N_("topic.offers"),
    "newsletter": N_("topic.newsletter"),
}


@pass_context
def _gettext(context: Context, msgid: str, **fields: str) -> str:
    """`_()` in the templates: the message in the page's language (`lang`), its fields filled
    in the catalogue's way (`str.format`, the same as `translate`)."""
    return translate(context["lang"], msgid, **fields)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, n: int, **fields: object) -> str:
    """The extension installs a plural form with `_()`; the same rules apply."""
    return translations(context["lang"]).ngettext(singular, plural, n).format(num=n, **fields)


_templates = Environment(
    loader=PackageLoader("sastre", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
    extensions=["jinja2.ext.i18n"],
)
# The page's language is in each render's context, so one environment serves every language.
_templates.install_gettext_callables(  # type: ignore[attr-defined]
    _gettext, _ngettext, newstyle=False
)


class _Words:
    """The names and phrases a page builds at run time, in one language: channels, topics,
    what a link is about, a consent's status, the days of the week."""

    def __init__(self, language: str) -> None:
        self.language = language

    def __call__(self, msgid: str, **fields: str) -> str:
        return translate(self.language, msgid, **fields)

    def channel(self, channel: str) -> str:
        return self(_CHANNEL_NAMES[channel])

    def topic(self, topic: str) -> str:
        return self(_TOPIC_NAMES[topic]) if topic in _TOPIC_NAMES else topic

    def what(self, topic: str) -> str:
        """What a link is about: one topic's messages, or all marketing."""
        if topic:
            return translate(self.language, "marketing.topic", topic=self.topic(topic))
        return translate(self.language, "marketing.all")

    def consent_line(self, status: str, purpose: str, topic: str, channel: str) -> str:
        name = self(_PURPOSE_NAMES[purpose]) + (f" ({self.topic(topic)})" if topic else "")
        return self(_STATUS_LINES[status], purpose=name, channel=self.channel(channel))

    def day_names(self) -> list[str]:
        """Monday first, as `DAYS`: from CLDR, like every other date Sastre writes."""
        names = get_day_names("abbreviated", locale=self.language)
        return [names[day] for day in range(len(DAYS))]


def _language_names() -> list[tuple[str, str]]:
    """Every language with a catalogue, each named in itself ("Español", "English")."""
    names = ((code, Locale.parse(code).get_display_name(code)) for code in available_languages())
    return sorted((code, (name or code)[:1].upper() + (name or code)[1:]) for code, name in names)


def signer(request: web.Request) -> LinkSigner:
    return LinkSigner(request.app[SETTINGS].secret())


def _bad_link(msgid: str) -> web.Response:
    """A link that names nobody: the reason in every language, English first."""
    languages = sorted(available_languages(), key=lambda code: (code != FALLBACK_LANGUAGE, code))
    reason = " / ".join(dict.fromkeys(translate(code, msgid) for code in languages))
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
    """The customer's chosen language, else the one we know them in, else the default's."""
    async with request.app[READER]() as session:
        customer = await get_customer(session, customer_id)
        preferences = await load_preferences(session, customer.id)
    settings = request.app[SETTINGS]
    return pick_language(preferences.language, customer.language, settings.default_language)


# --- unsubscribe (RFC 2369 / RFC 8058) ----------------------------------------------------------

_NOT_AN_UNSUBSCRIBE_LINK: Final = N_("link.invalid.unsubscribe")
_NOT_A_CONFIRMATION_LINK: Final = N_("link.invalid.confirm")
_NOT_A_PREFERENCES_LINK: Final = N_("link.invalid.preferences")


def _read_unsubscribe(request: web.Request) -> UnsubscribeLink:
    return signer(request).read_unsubscribe(request.match_info["token"])


async def _unsubscribe_page(
    request: web.Request, link: UnsubscribeLink, done: bool
) -> web.Response:
    lang = await _language(request, link.customer_id)
    words = _Words(lang)
    preferences = signer(request).preferences_token(PreferenceLink(link.customer_id, link.channel))
    return _page(
        "unsubscribe.html",
        lang=lang,
        what=words.what(link.topic),
        channel=words.channel(link.channel),
        done=done,
        preferences_url=f"/preferences/{preferences}",
    )


@routes.get("/u/{token}")
async def unsubscribe_form(request: web.Request) -> web.Response:
    try:
        link = _read_unsubscribe(request)
        return await _unsubscribe_page(request, link, done=False)
    except (BadToken, CustomerNotFound):
        return _bad_link(_NOT_AN_UNSUBSCRIBE_LINK)


@routes.post("/u/{token}")
async def unsubscribe(request: web.Request) -> web.Response:
    """One click, no cookie, no login; idempotent: a second click changes nothing more."""
    try:
        link = _read_unsubscribe(request)
    except BadToken:
        return _bad_link(_NOT_AN_UNSUBSCRIBE_LINK)
    form = await read_form(request)
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
        return _bad_link(_NOT_AN_UNSUBSCRIBE_LINK)
    return await _unsubscribe_page(request, link, done=True)


# --- double opt-in confirmation ------------------------------------------------------------------


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
    words = _Words(lang)
    done = status == ConsentStatus.GRANTED.value
    return _page(
        "confirm.html",
        lang=lang,
        what=words.what(link.topic),
        channel=words.channel(link.channel),
        done=done,
        nothing=not done and status != ConsentStatus.PENDING.value,
    )


@routes.get("/c/{token}")
async def confirm_form(request: web.Request) -> web.Response:
    try:
        link = signer(request).read_confirm(request.match_info["token"])
        return await _confirm_page(request, link, await _status(request, link))
    except (BadToken, CustomerNotFound):
        return _bad_link(_NOT_A_CONFIRMATION_LINK)


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
        return _bad_link(_NOT_A_CONFIRMATION_LINK)


# --- the preference centre ----------------------------------------------------------------------


def _read_preferences(request: web.Request) -> PreferenceLink:
    return signer(request).read_preferences(request.match_info["token"])


async def _preferences_page(
    request: web.Request,
    link: PreferenceLink,
    notice: str = "",
    status: int = 200,
    **notice_fields: str,
) -> web.Response:
    """The preference centre; `notice` is the message id of what the last action did."""
    lang = await _language(request, link.customer_id)
    words = _Words(lang)
    async with request.app[READER]() as session:
        customer = await get_customer(session, link.customer_id)
        preferences = await load_preferences(session, customer.id)
        rows = await current_consents(session, customer.id)
    preferred = [c.value for c in preferences.channels][:CHANNEL_SLOTS]
    preferred += [""] * (CHANNEL_SLOTS - len(preferred))
    consent_lines = [words.consent_line(s.status, s.purpose, s.topic, s.channel) for s, _ in rows]
    token = request.match_info["token"]
    return _page(
        "preferences.html",
        status=status,
        lang=lang,
        notice=notice,
        notice_fields=notice_fields,
        channels=[(c.value, words.channel(c)) for c in Channel],
        choices=_CHOICES,
        preferred=preferred,
        topics=[(t, words.topic(t)) for t in request.app[SETTINGS].topic_list],
        chosen_topics=set(preferences.topics),
        days=list(zip(DAYS, words.day_names(), strict=True)),
        chosen_days={DAYS[d] for d in (preferences.window_days or range(7))},
        window_start=preferences.window_start.strftime("%H:%M") if preferences.window_start else "",
        window_end=preferences.window_end.strftime("%H:%M") if preferences.window_end else "",
        languages=_language_names(),
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
        return _bad_link(_NOT_A_PREFERENCES_LINK)


@routes.post("/preferences/{token}")
async def save_preferences(request: web.Request) -> web.Response:
    try:
        link = _read_preferences(request)
        form = await read_form(request)
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
        return _bad_link(_NOT_A_PREFERENCES_LINK)
    except InvalidPreferences as e:
        return await _preferences_page(
            request, link, N_("preferences.invalid"), 400, field=e.field, reason=e.reason
        )
    return await _preferences_page(request, link, N_("preferences.saved"))


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
        return _bad_link(_NOT_A_PREFERENCES_LINK)
    return await _preferences_page(request, link, N_("preferences.withdrawn"))
