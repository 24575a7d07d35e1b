"""The SMS sender from the settings: Twilio when an account is configured, otherwise none."""

from __future__ import annotations

from channels.sms import TwilioSms
from sastre.config import Settings

__all__ = ["STATUS_PATH", "build_sender", "status_callback_url"]

# Where Twilio posts delivery states (sastre.web.twilio serves it).
STATUS_PATH = "/webhooks/twilio/status"


def status_callback_url(settings: Settings) -> str:
    """The status callback as Twilio must reach it: our public URL, which it also signs."""
    return settings.external_url + STATUS_PATH


def build_sender(settings: Settings) -> TwilioSms | None:
    """A Twilio sender, or None when SMS is off. Call it inside the running event loop (it
    opens an HTTP session), and close what it returns when the process stops."""
    if settings.twilio_account_sid is None or settings.twilio_auth_token is None:
        return None
    return TwilioSms(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        sender=settings.twilio_from,
        messaging_service_sid=settings.twilio_messaging_service_sid,
        status_callback=status_callback_url(settings),
        api_base=settings.twilio_api_base,
        connections=settings.worker_concurrency,  # one kept-alive connection per call in flight
    )
