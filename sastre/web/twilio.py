"""Twilio's webhooks: incoming SMS/MMS, and the delivery states of what we sent.

    POST /webhooks/twilio/sms     an incoming message: stored, then 200 with empty TwiML
    POST /webhooks/twilio/status  a status callback: the delivery state moves forward

Both are signed (`X-Twilio-Signature`, over our public URL and the form): a request that is not
is a 403 and changes nothing. An incoming message is handed to the inbound path, which dedupes
it by MessageSid, answers it and stores it all before returning; only then is it acknowledged,
so every 200 means stored (Twilio does not post it again). The answer is empty TwiML: replies go
out through the outbox and the REST API, with a status callback, tracked like every message.
A form Twilio would not send is a 400 naming the field. With SMS not configured both are 404.
"""

from __future__ import annotations

import functools
from typing import Final

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from channels.sms_webhooks import (
    EMPTY_TWIML,
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    WebhookSignature,
    parse_inbound,
    parse_status,
)
from sastre.appkeys import INBOUND, SESSIONMAKER, SETTINGS
from sastre.channels_setup.sms import STATUS_PATH
from sastre.config import Settings, parse_webhook_keys
from sastre.operations.sms import do_record_sms_status
from sastre.web.errors import ApiError
from sastre.web.form_input import read_form

__all__ = ["INBOUND_PATH", "STATUS_PATH", "routes", "webhook_signature"]

routes = web.RouteTableDef()
INBOUND_PATH: Final = "/webhooks/twilio/sms"
_FORM: Final = "application/x-www-form-urlencoded"


def webhook_signature(settings: Settings) -> WebhookSignature | None:
    """How Twilio's requests are checked; None when SMS is not configured."""
    if settings.twilio_auth_token is None:
        return None
    keys = settings.twilio_webhook_keys
    return _signature(
        settings.twilio_auth_token.get_secret_value(),
        settings.external_url,
        keys.get_secret_value() if keys else "",
    )


@functools.lru_cache(maxsize=16)
def _signature(auth_token: str, public_url: str, shared_keys: str) -> WebhookSignature:
    # One per configuration, not one per webhook (it is immutable); the keys were validated
    # with the settings.
    keys = parse_webhook_keys(shared_keys) if shared_keys else {}
    return WebhookSignature(auth_token, public_url, keys)


async def _signed_form(request: web.Request) -> MultiDictProxy[str]:
    """The POSTed form, once its signature is proven; 404 with SMS off, 403 if unsigned."""
    signature = webhook_signature(request.app[SETTINGS])
    if signature is None:
        raise ApiError(404, "SMS is not configured", "set SASTRE_TWILIO_ACCOUNT_SID")
    if request.content_type != _FORM:
        raise ApiError(415, "unsupported media type", f"Twilio posts {_FORM}")
    # Not a form (bad bytes, a file): a 400 naming what. A NUL is kept until the signature,
    # made over the values as sent, is checked: carriers put NULs in real messages (in place
    # of an "@"), and refusing one would lose the message (Twilio does not post it again).
    form = await read_form(request, keep_nul=True)
    refused = signature.refusal(
        request.path_qs,
        form,
        request.headers.get(SIGNATURE_HEADER),
        request.headers.get(SIGNATURE_SETTINGS_HEADER),
    )
    if refused is not None:
        raise ApiError(403, "invalid signature", refused)
    return _without_nul(form)


def _without_nul(form: MultiDictProxy[str]) -> MultiDictProxy[str]:
    """NUL (which the database cannot store) replaced by U+FFFD, as `InboundMessage` does."""
    if not any("\x00" in value for value in form.values()):
        return form
    return MultiDictProxy(
        MultiDict((name, value.replace("\x00", "\ufffd")) for name, value in form.items())
    )


@routes.post(INBOUND_PATH)
async def incoming_sms(request: web.Request) -> web.Response:
    form = await _signed_form(request)
    message = parse_inbound(form)  # MalformedWebhook: a 400 naming the field (sastre.web.errors)
    await request.app[INBOUND].handle(message)
    return web.Response(text=EMPTY_TWIML, content_type="text/xml")


@routes.post(STATUS_PATH)
async def delivery_status(request: web.Request) -> web.Response:
    form = await _signed_form(request)
    report = parse_status(form)
    settings = request.app[SETTINGS]
    await do_record_sms_status(request.app[SESSIONMAKER], report, region=settings.default_region)
    return web.Response(text=EMPTY_TWIML, content_type="text/xml")
