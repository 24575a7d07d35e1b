"""Configuration, read once from the environment (and an optional `.env`) into a frozen object.

Only this module reads the environment. Everything else receives a `Settings` instance.
A bad value fails fast with a message naming the variable; secrets never appear in a repr.
"""

from __future__ import annotations

import secrets
from datetime import time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self

import phonenumbers
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from typing_extensions import override

from consent.policy import PolicyRules, QuietHours

__all__ = ["ConfigError", "Environment", "Settings", "load_settings"]

VAR_DIR = Path("var")


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
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str = ""
    secret_key: SecretStr | None = None
    default_region: str = "US"
    default_language: str = "en"
    default_timezone: str = "UTC"
    log_level: str = "INFO"
    # Marketing topics customers can choose in the preference centre (comma-separated).
    topics: str = "new-products,offers,newsletter"

    # The contact policy (COMPLIANCE.md). Quiet-hour overrides: "GB=09:00-20:00,US-TX=09:00-21:00"
    # (country or country-region); the TCPA defaults and the stricter US states apply otherwise.
    quiet_hours: str = ""
    # Named in every compliance reply (HELP, STOP) and in customer-facing pages.
    brand_name: str = "Sastre"
    support_contact: str = "our web chat or support@example.com"
    # A real Rasa server's base URL; unset = the embedded understanding.
    rasa_url: str | None = None
    # FAQ matcher: "lexical" (default, light) or "semantic" (pip install 'sastre[semantic]').
    faq_matcher: Literal["lexical", "semantic"] = "lexical"
    # Web chat identity verification: a site sends user_id and hex(HMAC-SHA256(this, user_id)).
    webchat_identity_secret: SecretStr | None = None
    # Other sites' origins that embed the widget (comma-separated, "*" for any); our own host is
    # always allowed. A page from anywhere else may not open the chat socket.
    webchat_origins: str = ""
    complaint_cooldown_days: int = Field(default=30, ge=0)
    marketing_max_per_day: int = Field(default=1, ge=0)
    marketing_max_per_week: int = Field(default=2, ge=0)

    # Value tiers (PRODUCT.md, seed 001). Shares are fractions in (0, 1].
    tier_cmv_profit_share: float = Field(default=0.8, gt=0, le=1)
    tier_cmp_potential_multiple: float = Field(default=2.0, gt=0)
    tier_cmp_top_share: float = Field(default=0.2, gt=0, le=1)

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
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("use redis://host:port/db, rediss://… or unix:///path")
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
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

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
    def quiet_hour_overrides(self) -> dict[str, QuietHours]:
        return parse_quiet_hours(self.quiet_hours)

    @property
    def policy_rules(self) -> PolicyRules:
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
        return values

    @override
    def __repr_args__(self) -> Any:
        return list(self.masked().items())

    def secret(self) -> bytes:
        """The signing key. Only defined once `ensure_secret_key` has run in development."""
        if self.secret_key is None:
            raise ConfigError("SASTRE_SECRET_KEY is not set")
        return self.secret_key.get_secret_value().encode()


def parse_quiet_hours(text: str) -> dict[str, QuietHours]:
    """ "GB=09:00-20:00,US-TX=09:00-21:00" -> {"GB": QuietHours(...), "US-TX": ...}."""
    overrides: dict[str, QuietHours] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        place, _, span = item.partition("=")
        start, _, end = span.partition("-")
        try:
            overrides[place.strip().upper()] = QuietHours(
                time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
            )
        except ValueError:
            raise ValueError(f"{item!r}: write PLACE=HH:MM-HH:MM, e.g. GB=09:00-20:00") from None
    return overrides


def _mask_url_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def _development_secret() -> str:
    """Generate once and keep under ./var/, so signed links survive a restart."""
    path = VAR_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def load_settings(**overrides: Any) -> Settings:
    """Read the environment once; raise ConfigError naming the variable on a bad value."""
    try:
        settings = Settings(**overrides)
    except ValidationError as e:
        raise ConfigError(_describe_validation_error(e)) from None
    if settings.secret_key is None:
        settings = settings.model_copy(update={"secret_key": SecretStr(_development_secret())})
    return settings


def _describe_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "settings"
        name = f"SASTRE_{field.upper()}" if item["loc"] else "settings"
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}: {message}")
    return "configuration error: " + "; ".join(lines)
