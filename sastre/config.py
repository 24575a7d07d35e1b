"""Configuration, read once from the environment (and an optional `.env`) into a frozen object.

Only this module reads the environment. Everything else receives a `Settings` instance.
Every value is checked here, at start-up, so a wrong one stops the service with a message naming
the variable instead of failing later, request by request (a time zone that does not exist would
otherwise be a 500 for every customer who has none of their own). Secrets never appear in a repr.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import os
import re
import secrets
import ssl
from datetime import time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import SplitResult, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import pycountry
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from typing_extensions import override

# Only the contact-hours type, not the contact policy: the policy's tiers load the customer
# models and the ORM, a third of a second that `sastre token create` would pay for nothing.
from consent.hours import ContactHours
from wording import available_languages

if TYPE_CHECKING:
    from consent.policy import PolicyRules

__all__ = ["ConfigError", "Environment", "Settings", "load_settings"]

VAR_DIR = Path("var")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MIN_SECRET_LENGTH = 16
# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
# The consent ledger's topic rule (consent.ledger.MAX_TOPIC): a topic is a ledger key.
_TOPIC = re.compile(r"[a-z0-9_-]{1,64}")
# Twilio's alphanumeric sender id: up to 11 letters, digits and spaces, at least one letter.
_TWILIO_ALPHANUMERIC = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
_SHARED_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


MIN_RATE = 1 / 86_400  # messages per second: one a day, the slowest rate that makes sense


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class ConfigError(Exception):
    """A configuration value is missing or wrong; the message names the variable."""


def _default_database_url() -> str:
    return f"sqlite+aiosqlite:///{(VAR_DIR / 'sastre.db').as_posix()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SASTRE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    env: Environment = Environment.DEVELOPMENT
    database_url: str = Field(default_factory=_default_database_url)
    redis_url: str | None = None
    host: str = "127.0.0.1"
    # 0: the system picks a free port when the service binds; the command says which.
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str = ""
    secret_key: SecretStr | None = None
    default_region: str = "US"
    default_language: str = "en"
    default_timezone: str = "UTC"
    log_level: str = "INFO"
    # Marketing topics customers can choose in the preference centre (comma-separated).
    topics: str = "new-products,offers,newsletter"

    # The contact policy (docs/permission-marketing.md). Quiet-hour overrides:
    # "GB=09:00-20:00,US-TX=09:00-21:00" (country or country-region); the TCPA defaults and the
    # stricter US states apply otherwise.
    quiet_hours: str = ""
    # Named in every compliance reply (HELP, STOP) and in customer-facing pages.
    brand_name: str = "Sastre"
    # A bare contact (an address, a phone, a URL): the sentence around it is the catalogue's,
    # in the customer's language ("ayuda en support@example.com").
    support_contact: str = "support@example.com"
    # The sender's postal address, in the footer of every marketing e-mail (CAN-SPAM requires one
    # in commercial mail); unset, marketing e-mail is refused, naming this setting. One line:
    # "Tienda SL, Calle Mayor 1, 28013 Madrid, Spain" (lines written apart are joined by commas).
    postal_address: str | None = None
    # The message frequency the SMS programme states (CTIA: the HELP reply says it), per month;
    # 0: "varies". Worded by the catalogue in the customer's language (keyword.frequency).
    sms_messages_per_month: int = Field(default=4, ge=0, le=10_000)
    # A real Rasa server's base URL; unset = the embedded understanding.
    rasa_url: str | None = None
    # The longest a bot outside the database is waited for, in seconds. Rasa's own client gives
    # up sooner (5 s) and hands the customer to a person: this bounds a bot that hangs past its
    # own timeout. Past it the message stays stored, awaiting the bot, and its sender is told to
    # deliver it again (a 503, SMTP's 451).
    bot_timeout: float = Field(default=15.0, gt=0, le=300, allow_inf_nan=False)
    # FAQ matcher: "lexical" (default, light) or "semantic" (pip install 'sastre[semantic]').
    faq_matcher: Literal["lexical", "semantic"] = "lexical"
    # Where the embedded bot reads queued messages ahead of their turn (sastre.bot_reading):
    # "process" (a child process: the second core does it, the event loop stays free),
    # "loop" (on the event loop), "auto" (a process when the machine has two cores or more).
    bot_reader: Literal["auto", "process", "loop"] = "auto"
    # Web chat identity verification: a site sends user_id and hex(HMAC-SHA256(this, user_id)).
    webchat_identity_secret: SecretStr | None = None
    # Other sites' origins that embed the widget (comma-separated, "*" for any); our own host is
    # always allowed. A page from anywhere else may not open the chat socket.
    webchat_origins: str = ""
    # Abuse limits per client address: a socket without a visitor cookie is a new visitor, and a
    # new visitor's first message makes a new lead (sastre.web.chat_limits).
    webchat_new_visitors_per_minute: int = Field(default=20, ge=1, le=100_000)
    webchat_new_leads_per_hour: int = Field(default=60, ge=1, le=1_000_000)
    # A web chat lead that gave nothing but its cookie and wrote nothing for this long may be
    # purged (`sastre leads purge`).
    webchat_lead_retention_days: int = Field(default=30, ge=1, le=3650)
    # Proxies whose X-Forwarded-For is believed (comma-separated addresses or CIDRs, such as
    # "10.0.0.0/8,::1"); empty: the connecting address is the client's.
    trusted_proxies: str = ""

    # The outbox workers (sastre.worker). `sastre serve` runs one in its own process unless
    # this is 0; `sastre worker` runs only a worker, as many as wanted on PostgreSQL.
    serve_worker: bool = True
    worker_concurrency: int = Field(default=64, ge=1, le=10_000)  # provider calls in flight
    worker_lease_seconds: float = Field(default=60.0, ge=1, le=86_400, allow_inf_nan=False)
    # Messages per second per channel, across every worker (shared through Redis when
    # SASTRE_REDIS_URL is set); 0 = unlimited. A US long code sends about 1 SMS/s.
    rate_sms: float = Field(default=1.0, ge=0, le=100_000, allow_inf_nan=False)
    rate_email: float = Field(default=10.0, ge=0, le=100_000, allow_inf_nan=False)
    rate_telegram: float = Field(default=30.0, ge=0, le=100_000, allow_inf_nan=False)

    @field_validator("rate_sms", "rate_email", "rate_telegram")
    @classmethod
    def _check_rate(cls, value: float) -> float:
        # A rate's window is 1/rate seconds: one so small it is longer than the calendar holds
        # (1e-12/s) broke every claim that filled it.
        if 0 < value < MIN_RATE:
            raise ValueError(f"must be 0 (unlimited) or at least {MIN_RATE:.6f} (one a day)")
        return value

    # Retries of retryable failures: exponential from the base, capped, with full jitter.
    retry_max_attempts: int = Field(default=8, ge=1, le=100)
    retry_base_seconds: float = Field(default=2.0, gt=0, le=3600, allow_inf_nan=False)
    retry_max_seconds: float = Field(default=900.0, gt=0, le=86_400, allow_inf_nan=False)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.trusted_proxies)

    # Bounded so that a typo cannot overflow a date (ten years of cooldown is plenty).
    complaint_cooldown_days: int = Field(default=30, ge=0, le=3650)
    marketing_max_per_day: int = Field(default=1, ge=0, le=1000)
    marketing_max_per_week: int = Field(default=2, ge=0, le=1000)

    # Value tiers (docs/value-tiers.md). Shares are fractions in (0, 1].
    tier_cmv_profit_share: float = Field(default=0.8, gt=0, le=1, allow_inf_nan=False)
    tier_cmp_potential_multiple: float = Field(default=2.0, gt=0, le=1000, allow_inf_nan=False)
    tier_cmp_top_share: float = Field(default=0.2, gt=0, le=1, allow_inf_nan=False)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as e:
            raise ValueError(f"not a database URL: {e}") from e
        if url.drivername not in {"sqlite+aiosqlite", "postgresql+asyncpg"}:
            raise ValueError(
                "use sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user@host/db"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        usage = "use redis://host:port/db, rediss://… or unix:///path"
        parts = _split_url(value, usage)
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError(f"names no socket path; {usage}")
            return value
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(usage)
        _require_host_and_port(parts)
        if parts.path.strip("/") and not parts.path.strip("/").isdecimal():
            raise ValueError(f"the database {parts.path!r} is not a number; {usage}")
        return value

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        host = value.strip()
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not _HOST_NAME.fullmatch(host):
                raise ValueError(
                    f"{value!r} is not an IP address or host name (e.g. 127.0.0.1, 0.0.0.0, ::)"
                ) from None
        return host

    @field_validator("default_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        zone = value.strip()
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # OSError: a directory of the time-zone database ("America") is not a zone.
            raise ValueError(
                f"{value!r} is not an IANA time zone (e.g. UTC, Europe/Madrid, America/New_York)"
            ) from None
        return zone

    @field_validator("default_language")
    @classmethod
    def _check_language(cls, value: str) -> str:
        # The languages with a catalogue of what customers read: a default outside them would
        # answer every customer in the fallback language.
        language = value.strip().lower()
        if language in available_languages():
            return language
        import pycountry  # only to word the message: a tenth of a second at every start

        spoken = ", ".join(sorted(available_languages()))
        known = len(language) == 2 and pycountry.languages.get(alpha_2=language) is not None
        if known:
            raise ValueError(f"{value!r}: Sastre has no texts in that language yet (use {spoken})")
        raise ValueError(f"{value!r} is not an ISO 639-1 language code (use {spoken})")

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError(f"{value!r} is not a log level (DEBUG, INFO, WARNING, ERROR)")
        return level

    @field_validator("topics")
    @classmethod
    def _check_topics(cls, value: str) -> str:
        for topic in (t.strip().lower() for t in value.split(",") if t.strip()):
            if not _TOPIC.fullmatch(topic):
                raise ValueError(
                    f"{topic!r}: a topic is up to 64 letters, digits, '-' or '_' (comma-separated)"
                )
        return value

    @field_validator("brand_name", "support_contact")
    @classmethod
    def _check_wording(cls, value: str) -> str:
        text = value.strip()
        if not text:
            raise ValueError("must not be empty: customers read it in compliance replies")
        if len(text) > 200:
            raise ValueError("must be at most 200 characters")
        if not text.isprintable():  # a line break in it: the e-mail Subject it becomes, refused
            raise ValueError("must be one line of printable characters")
        return text

    @field_validator("postal_address")
    @classmethod
    def _check_postal_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Each line's spacing tidied, the lines joined: it is one line of the e-mail's footer.
        text = ", ".join(" ".join(line.split()) for line in value.splitlines() if line.strip())
        if not text:
            return None
        if not text.isprintable():
            raise ValueError("must be printable text (a postal address), not control characters")
        if len(text) > 300:
            raise ValueError("must be at most 300 characters")
        return text

    @field_validator("rasa_url")
    @classmethod
    def _check_rasa_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        _check_http_url(value)
        return value.rstrip("/")

    @field_validator("webchat_origins")
    @classmethod
    def _check_webchat_origins(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",") if o.strip()):
            if origin == "*":
                continue
            parts = _check_http_url(origin)
            if parts.path not in ("", "/") or parts.query or parts.fragment:
                raise ValueError(f"{origin!r} is not an origin: write scheme://host[:port] only")
        return value

    @field_validator("faq_matcher")
    @classmethod
    def _check_faq_matcher(cls, value: str) -> str:
        if value == "semantic" and importlib.util.find_spec("sentence_transformers") is None:
            raise ValueError("'semantic' needs its extra: pip install 'sastre[semantic]'")
        return value

    @field_validator("secret_key", "webchat_identity_secret")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # an empty variable is an unset one
        if len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
        return value

    @field_validator("default_region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phonenumbers knows (e.g. US, ES, MX)")
        return region

    @field_validator("quiet_hours")
    @classmethod
    def _check_quiet_hours(cls, value: str) -> str:
        parse_quiet_hours(value)
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        if not value:
            return value
        parts = _check_http_url(value)
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or a fragment")
        return value.rstrip("/")

    # SMS through Twilio (README "SMS"): off until an account SID is set. Messages go from
    # `twilio_from` (E.164, short code or alphanumeric sender id) or, when set, a Messaging
    # Service. The API base is Twilio's own unless a test points it at a local fake.
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base: str = "https://api.twilio.com"
    # SharedKeys that Webhook Settings sign our webhooks with instead of the auth token, as
    # `<SharedKey id>=<secret>` separated by commas: two while one is being rotated.
    twilio_webhook_keys: SecretStr | None = None

    @field_validator("twilio_account_sid", "twilio_messaging_service_sid")
    @classmethod
    def _check_twilio_sid(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not value.strip():
            return None
        prefix = "AC" if info.field_name == "twilio_account_sid" else "MG"
        sid = value.strip()
        if not re.fullmatch(f"{prefix}[0-9a-fA-F]{{32}}", sid):
            raise ValueError(f"is not a Twilio SID ({prefix} and 32 hex digits)")
        return sid

    @field_validator("twilio_auth_token")
    @classmethod
    def _check_twilio_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return SecretStr(value.get_secret_value().strip())

    @field_validator("twilio_from")
    @classmethod
    def _check_twilio_from(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        sender = value.strip()
        if _TWILIO_ALPHANUMERIC.fullmatch(sender) or re.fullmatch(r"[0-9]{5,6}", sender):
            return sender  # an alphanumeric sender id, or a short code
        try:
            number = phonenumbers.parse(sender)
        except phonenumbers.NumberParseException:
            number = None
        if number is None or not phonenumbers.is_possible_number(number):
            raise ValueError(
                "write an E.164 number (+14155550100), a short code or a sender id of up to "
                "11 letters and digits"
            ) from None
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    @field_validator("twilio_api_base")
    @classmethod
    def _check_twilio_api_base(cls, value: str) -> str:
        parts = _check_http_url(value)
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or a fragment")
        return value.rstrip("/")

    @field_validator("twilio_webhook_keys")
    @classmethod
    def _check_twilio_webhook_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        parse_webhook_keys(value.get_secret_value())  # names the entry, never its secret
        return SecretStr(value.get_secret_value().strip())

    @model_validator(mode="after")
    def _require_twilio_parts(self) -> Self:
        # Any one part means SMS was meant to be on: a missing one is named at start-up rather
        # than leaving SMS silently off (a token without its SID) or unable to take replies.
        given = [
            name
            for name, value in (
                ("SASTRE_TWILIO_ACCOUNT_SID", self.twilio_account_sid),
                ("SASTRE_TWILIO_AUTH_TOKEN", self.twilio_auth_token),
                ("SASTRE_TWILIO_FROM", self.twilio_from),
                ("SASTRE_TWILIO_MESSAGING_SERVICE_SID", self.twilio_messaging_service_sid),
                ("SASTRE_TWILIO_WEBHOOK_KEYS", self.twilio_webhook_keys),
            )
            if value is not None
        ]
        if not given:
            return self
        with_ = f"with {given[0]}"
        if self.twilio_account_sid is None:
            raise ValueError(f"SASTRE_TWILIO_ACCOUNT_SID is required {with_}")
        if self.twilio_auth_token is None:
            raise ValueError(f"SASTRE_TWILIO_AUTH_TOKEN is required {with_}")
        if self.twilio_from is None and self.twilio_messaging_service_sid is None:
            raise ValueError(
                f"SASTRE_TWILIO_FROM or SASTRE_TWILIO_MESSAGING_SERVICE_SID is required {with_}"
            )
        if not self.public_url:
            # Twilio signs its webhooks for the URL it was given: without the public one no
            # inbound SMS or delivery report can be checked, and no status callback is sent.
            raise ValueError(
                "SASTRE_PUBLIC_URL is required for SMS (the address Twilio posts webhooks to)"
            )
        return self

    @property
    def sms_enabled(self) -> bool:
        return self.twilio_account_sid is not None and self.twilio_auth_token is not None

    # E-mail (README "E-mail"). In: an SMTP listener (HOST:PORT, off when unset) and the webhook
    # POST /webhooks/email, which takes a bearer token (off when unset). Out: an SMTP server,
    # off until a host and a From address are set. Senders are proven by DKIM or by the
    # Authentication-Results of a relay named here (its authserv-id, comma-separated).
    smtp_listen: str | None = None
    inbound_email_token: SecretStr | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: Literal["starttls", "ssl", "none"] = "starttls"
    # The authorities (PEM) that vouch for the SMTP server's certificate, for a server whose
    # certificate a private CA issued; unset: the system's.
    smtp_ca_file: str | None = None
    # Connections kept open to the SMTP server per worker process, each sending one message
    # after another (a relay may cap how many one client opens: Postfix allows 50).
    smtp_connections: int = Field(default=8, ge=1, le=1000)
    email_from: str | None = None
    email_unsubscribe_mailto: str | None = None  # List-Unsubscribe's mailto; default: From
    email_trusted_relays: str = ""
    # The SMTP listener honours those relays' Authentication-Results only from a peer in these
    # networks: mail delivered to the listener straight from anywhere else could carry a forged
    # topmost header naming the relay. Default: the relay on this host (loopback).
    email_relay_networks: str = "127.0.0.0/8, ::1"
    # Where attachments' bytes are kept (one file per content); empty: kept as metadata only.
    email_attachments_dir: str = ""
    # The largest inbound message taken, at both doors (the SMTP listener says so in EHLO and
    # refuses more with 552; the webhook answers 413). 25 MiB, as common mail services.
    email_max_bytes: int = Field(default=25 * 1024 * 1024, ge=64 * 1024, le=1024**3)

    @field_validator("smtp_listen")
    @classmethod
    def _check_smtp_listen(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from channels.email.smtp_in import parse_listen

        parse_listen(value)  # ValueError names the expected form
        return value.strip()

    @field_validator("smtp_username")
    @classmethod
    def _check_smtp_username(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else value.strip()

    @field_validator("smtp_password")
    @classmethod
    def _check_smtp_password(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None or not value.get_secret_value() else value

    @field_validator("inbound_email_token")
    @classmethod
    def _check_inbound_email_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value().strip()) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("smtp_host")
    @classmethod
    def _check_smtp_host(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return cls._check_host(value)

    @field_validator("email_from", "email_unsubscribe_mailto")
    @classmethod
    def _check_email_address(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from email.utils import parseaddr

        from email_validator import EmailNotValidError, validate_email

        _, address = parseaddr(value.strip())
        try:
            validate_email(address, check_deliverability=False)
        except EmailNotValidError as e:
            raise ValueError(f"{value!r} is not an e-mail address ({e})") from None
        return value.strip()

    @field_validator("email_attachments_dir")
    @classmethod
    def _check_attachments_dir(cls, value: str) -> str:
        # Checked now, not at the first attachment: a directory that cannot be written would
        # refuse every e-mail that carries one.
        if not value.strip():
            return ""
        problem = _unwritable_directory(Path(value.strip()))
        if problem is not None:
            raise ValueError(f"{problem}: attachments could not be kept there")
        return value.strip()

    @field_validator("smtp_ca_file")
    @classmethod
    def _check_smtp_ca_file(cls, value: str | None) -> str | None:
        # Read now, not at the first send: a file that is missing or holds no certificate
        # would fail every e-mail, each after its retries.
        if value is None or not value.strip():
            return None
        path = value.strip()
        try:
            ssl.create_default_context(cafile=path)
        except FileNotFoundError:
            raise ValueError(f"{path}: no such file") from None
        except (OSError, ssl.SSLError) as error:
            raise ValueError(f"{path}: not PEM certificates ({error})") from None
        return path

    @field_validator("email_relay_networks")
    @classmethod
    def _check_relay_networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def email_relay_network_list(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.email_relay_networks)

    @field_validator("email_trusted_relays")
    @classmethod
    def _check_trusted_relays(cls, value: str) -> str:
        for relay in (r.strip() for r in value.split(",") if r.strip()):
            if not _HOST_NAME.fullmatch(relay):
                raise ValueError(f"{relay!r} is not an authserv-id (a host name, e.g. mx.example)")
        return value

    @model_validator(mode="after")
    def _require_email_parts(self) -> Self:
        if self.smtp_host is not None and self.email_from is None:
            raise ValueError("SASTRE_EMAIL_FROM is required with SASTRE_SMTP_HOST")
        # A login needs both halves: one alone would fail at the first send, not at start-up.
        if self.smtp_username is not None and self.smtp_password is None:
            raise ValueError("SASTRE_SMTP_PASSWORD is required with SASTRE_SMTP_USERNAME")
        if self.smtp_password is not None and self.smtp_username is None:
            raise ValueError("SASTRE_SMTP_USERNAME is required with SASTRE_SMTP_PASSWORD")
        if self.smtp_username is not None and self.smtp_host is None:
            raise ValueError("SASTRE_SMTP_HOST is required with SASTRE_SMTP_USERNAME")
        if self.smtp_ca_file is not None and self.smtp_tls == "none":
            raise ValueError("SASTRE_SMTP_CA_FILE is for TLS, and SASTRE_SMTP_TLS is none")
        return self

    @property
    def email_enabled(self) -> bool:
        return self.smtp_host is not None and self.email_from is not None

    @property
    def email_trusted_relay_list(self) -> list[str]:
        return [r.strip().lower() for r in self.email_trusted_relays.split(",") if r.strip()]

    @model_validator(mode="after")
    def _require_production_secret(self) -> Self:
        if self.env is Environment.PRODUCTION and self.secret_key is None:
            raise ValueError("SASTRE_SECRET_KEY is required when SASTRE_ENV=production")
        return self

    @property
    def external_url(self) -> str:
        """The URL the outside world uses to reach us (webhooks, unsubscribe links)."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def quiet_hour_overrides(self) -> dict[str, ContactHours]:
        return parse_quiet_hours(self.quiet_hours)

    @property
    def policy_rules(self) -> PolicyRules:
        from consent.policy import PolicyRules

        return PolicyRules(
            complaint_cooldown=timedelta(days=self.complaint_cooldown_days),
            max_per_day_per_channel=self.marketing_max_per_day,
            max_per_week_per_channel=self.marketing_max_per_week,
            max_per_day=self.marketing_max_per_day,
            max_per_week=self.marketing_max_per_week,
        )

    @property
    def topic_list(self) -> list[str]:
        return [t.strip().lower() for t in self.topics.split(",") if t.strip()]

    @property
    def webchat_origin_list(self) -> list[str]:
        return [o.strip() for o in self.webchat_origins.split(",") if o.strip()]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def masked(self) -> dict[str, Any]:
        """Every setting, safe to log: passwords in URLs and secrets are hidden."""
        values = self.model_dump(mode="json")
        values["database_url"] = make_url(self.database_url).render_as_string(hide_password=True)
        if self.redis_url:
            values["redis_url"] = _mask_url_password(self.redis_url)
        values["secret_key"] = "**********" if self.secret_key else None
        values["webchat_identity_secret"] = "**********" if self.webchat_identity_secret else None
        values["twilio_auth_token"] = "**********" if self.twilio_auth_token else None
        values["twilio_webhook_keys"] = "**********" if self.twilio_webhook_keys else None
        values["smtp_password"] = "**********" if self.smtp_password else None
        values["inbound_email_token"] = "**********" if self.inbound_email_token else None
        return values

    @override
    def __repr_args__(self) -> Any:
        return list(self.masked().items())

    def secret(self) -> bytes:
        """The signing key. Only defined once `ensure_secret_key` has run in development."""
        if self.secret_key is None:
            raise ConfigError("SASTRE_SECRET_KEY is not set")
        return self.secret_key.get_secret_value().encode()


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """ "10.0.0.0/8, ::1" -> the networks; a bare address is a network of one."""
    networks = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR, e.g. 10.0.0.0/8") from None
    return tuple(networks)


# What a customer's country may be (`crm_core.records`: ISO 3166-1), and what phone numbers name.
_COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries) | phonenumbers.SUPPORTED_REGIONS


def parse_quiet_hours(text: str) -> dict[str, ContactHours]:
    """ "GB=09:00-20:00,US-TX=09:00-21:00" -> {"GB": ContactHours(...), "US-TX": ...}."""
    overrides: dict[str, ContactHours] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        place, _, span = item.partition("=")
        place = place.strip().upper()
        country, _, region = place.partition("-")
        if country not in _COUNTRIES or not re.fullmatch(r"([A-Z0-9]{1,3})?", region):
            raise ValueError(
                f"{item!r}: {place or 'nothing'} is not a country (ISO 3166-1, e.g. GB) or a "
                "country's region (e.g. US-TX)"
            )
        if region == "" and place.endswith("-"):
            raise ValueError(f"{item!r}: the region after {country}- is missing (e.g. US-TX)")
        start, _, end = span.partition("-")
        try:
            overrides[place] = ContactHours(
                time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
            )
        except ValueError:
            raise ValueError(f"{item!r}: write PLACE=HH:MM-HH:MM, e.g. GB=09:00-20:00") from None
    return overrides


def _split_url(value: str, usage: str) -> SplitResult:
    try:
        return urlsplit(value.strip())
    except ValueError as e:  # e.g. an unclosed IPv6 bracket
        raise ValueError(f"{value!r} is not a URL ({e}); {usage}") from None


def _require_host_and_port(parts: SplitResult) -> None:
    if not parts.hostname:
        raise ValueError("names no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has a port that is not a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("has a port that is not a number from 1 to 65535")


def _check_http_url(value: str) -> SplitResult:
    """An absolute http(s) URL with a host and a valid port, or ValueError saying what is not."""
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError("must not hold spaces or control characters (write them %-encoded)")
    parts = _split_url(value, "write http://host or https://host")
    if parts.scheme not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    _require_host_and_port(parts)
    return parts


def parse_webhook_keys(value: str) -> dict[str, str]:
    """`id=secret,id=secret` (SASTRE_TWILIO_WEBHOOK_KEYS) as {id: secret}; ValueError naming
    the entry by its place, never repeating what it holds (a misplaced secret would show). A
    secret may hold "=" (only the first one divides), not ","."""
    keys: dict[str, str] = {}
    for place, entry in enumerate(value.split(","), start=1):
        key, separator, secret = (part.strip() for part in entry.partition("="))
        if not separator or not key or not secret:
            raise ValueError(f"entry {place} is not <SharedKey id>=<secret>")
        if not _SHARED_KEY_ID.fullmatch(key):
            raise ValueError(
                f"entry {place}: a SharedKey id is letters, digits, '_' and '-' (up to 64)"
            )
        if key in keys:
            raise ValueError(f"entry {place} names the same SharedKey as an earlier one")
        keys[key] = secret
    return keys


def _mask_url_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def _development_secret() -> str:
    """Generate once and keep under ./var/, so signed links survive a restart. A file there
    that holds no usable key stops start-up (ConfigError): signing with it, or replacing it,
    would each break the links already sent."""
    path = VAR_DIR / "secret_key"
    if path.exists():
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "it is not text"
            raise ConfigError(
                f"SASTRE_SECRET_KEY is unset and {path} cannot be read ({reason}): "
                "set SASTRE_SECRET_KEY, or remove the file to have a new key made"
            ) from None
        if len(key) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"SASTRE_SECRET_KEY is unset and {path} holds no key of at least "
                f"{MIN_SECRET_LENGTH} characters: set SASTRE_SECRET_KEY, or remove the file "
                "to have a new key made"
            )
        return key
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def _unwritable_directory(path: Path) -> str | None:
    """Why files could not be written under `path` (created on first use if missing), or None.

    The nearest part of the path that exists must be a directory this process may write to; it
    is not created here (checking settings changes nothing)."""
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} cannot be written by this process"
    return None


def load_settings(**overrides: Any) -> Settings:
    """Read the environment once; raise ConfigError naming the variable on a bad value."""
    try:
        settings = Settings(**overrides)
    except ValidationError as e:
        raise ConfigError(_describe_validation_error(e)) from None
    if settings.secret_key is None:
        settings = settings.model_copy(update={"secret_key": SecretStr(_development_secret())})
    return settings


# Settings whose value may hold a password: a message about them never repeats the value.
_NEVER_SHOWN = frozenset(
    {
        "secret_key",
        "webchat_identity_secret",
        "database_url",
        "redis_url",
        "twilio_auth_token",
        "twilio_webhook_keys",
        "smtp_password",
        "inbound_email_token",
    }
)


def _describe_validation_error(error: ValidationError) -> str:
    """One line naming each wrong variable, its value (unless secret) and what is wrong."""
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "settings"
        name = f"SASTRE_{field.upper()}" if item["loc"] else "settings"
        message = str(item["msg"]).removeprefix("Value error, ")
        value = item.get("input")
        if field not in _NEVER_SHOWN and isinstance(value, str) and repr(value) not in message:
            name = f"{name}={value!r}"
        lines.append(f"{name}: {message}")
    return "configuration error: " + "; ".join(lines)
