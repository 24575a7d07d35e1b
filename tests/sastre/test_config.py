"""Configuration: read once, typed, frozen, failing fast, secrets masked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from sastre import config
from sastre.config import ConfigError, Environment, load_settings, parse_webhook_keys
from wording import available_languages, catalogue


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("SASTRE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config, "VAR_DIR", tmp_path / "var")


def test_defaults() -> None:
    settings = load_settings(_env_file=None)
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.redis_url is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.external_url == "http://127.0.0.1:8080"
    assert settings.default_region == "US"


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SASTRE_PORT", "9000")
    monkeypatch.setenv("SASTRE_PUBLIC_URL", "https://hub.example.com/")
    monkeypatch.setenv("SASTRE_DEFAULT_REGION", "es")
    settings = load_settings(_env_file=None)
    assert settings.port == 9000
    assert settings.external_url == "https://hub.example.com"
    assert settings.default_region == "ES"


def test_port_0_asks_the_system_for_a_free_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SASTRE_PORT", "0")
    assert load_settings(_env_file=None).port == 0


def test_a_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SASTRE_PORT=9100\n")
    assert load_settings().port == 9100


# One or more wrong values of every kind of setting, with a word the message must contain.
BAD_VALUES = [
    # ports and numbers
    ("SASTRE_PORT", "http", "integer"),
    ("SASTRE_PORT", "70000", "65535"),
    ("SASTRE_PORT", "-1", "greater than or equal to 0"),
    ("SASTRE_COMPLAINT_COOLDOWN_DAYS", "-1", "greater than or equal to 0"),
    ("SASTRE_COMPLAINT_COOLDOWN_DAYS", "99999999999", "less than or equal to 3650"),
    ("SASTRE_MARKETING_MAX_PER_DAY", "many", "integer"),
    ("SASTRE_MARKETING_MAX_PER_WEEK", "-2", "greater than or equal to 0"),
    # shares in (0, 1] and positive multiples
    ("SASTRE_TIER_CMV_PROFIT_SHARE", "1.5", "less than or equal to 1"),
    ("SASTRE_TIER_CMV_PROFIT_SHARE", "0", "greater than 0"),
    ("SASTRE_TIER_CMP_TOP_SHARE", "nan", "finite"),
    ("SASTRE_TIER_CMP_POTENTIAL_MULTIPLE", "inf", "finite"),
    ("SASTRE_TIER_CMP_POTENTIAL_MULTIPLE", "-2", "greater than 0"),
    ("SASTRE_BOT_TIMEOUT", "0", "greater than 0"),
    ("SASTRE_BOT_TIMEOUT", "3600", "less than or equal to 300"),
    ("SASTRE_BOT_TIMEOUT", "inf", "finite"),
    # URLs
    ("SASTRE_DATABASE_URL", "mysql://localhost/db", "sqlite+aiosqlite"),
    ("SASTRE_REDIS_URL", "localhost:6379", "redis://"),
    ("SASTRE_REDIS_URL", "redis://cache:port/0", "port"),
    ("SASTRE_REDIS_URL", "redis://cache:6379/zero", "not a number"),
    ("SASTRE_PUBLIC_URL", "hub.example.com", "http://"),
    ("SASTRE_PUBLIC_URL", "https://", "no host"),
    ("SASTRE_PUBLIC_URL", "https://hub.example.com:99999", "port"),
    ("SASTRE_RASA_URL", "localhost:5005", "http://"),
    ("SASTRE_WEBCHAT_ORIGINS", "https://shop.example/page", "not an origin"),
    ("SASTRE_WEBCHAT_ORIGINS", "shop.example", "http://"),
    # places, languages and times
    ("SASTRE_DEFAULT_REGION", "XX", "region"),
    ("SASTRE_DEFAULT_TIMEZONE", "Mars/Base", "IANA time zone"),
    ("SASTRE_DEFAULT_TIMEZONE", "America", "IANA time zone"),
    ("SASTRE_DEFAULT_TIMEZONE", "../../etc/passwd", "IANA time zone"),
    ("SASTRE_DEFAULT_LANGUAGE", "xx", "ISO 639-1"),
    ("SASTRE_DEFAULT_LANGUAGE", "spanish", "ISO 639-1"),
    ("SASTRE_DEFAULT_LANGUAGE", "fr", "no texts in that language"),
    ("SASTRE_QUIET_HOURS", "GB=nine-to-five", "HH:MM"),
    ("SASTRE_QUIET_HOURS", "ZZ=09:00-20:00", "is not a country"),
    ("SASTRE_QUIET_HOURS", "=09:00-20:00", "is not a country"),
    ("SASTRE_QUIET_HOURS", "US-=09:00-20:00", "region after US- is missing"),
    # names and words
    ("SASTRE_HOST", "my host", "host name"),
    ("SASTRE_HOST", "http://example.com", "host name"),
    ("SASTRE_LOG_LEVEL", "loud", "log level"),
    ("SASTRE_ENV", "staging", "development"),
    ("SASTRE_FAQ_MATCHER", "neural", "lexical"),
    ("SASTRE_TOPICS", "offers,new products", "topic"),
    ("SASTRE_BRAND_NAME", "  ", "empty"),
    ("SASTRE_SUPPORT_CONTACT", "", "empty"),
    # the brand is an e-mail's default Subject: a line break in it made every such send fail
    ("SASTRE_BRAND_NAME", "Tienda\r\nBcc: all@example.com", "one line of printable"),
    ("SASTRE_PUBLIC_URL", "http://exa mple.com", "spaces or control characters"),
    # a rate's window is 1/rate seconds: longer than the calendar, every full window failed
    ("SASTRE_RATE_SMS", "1e-12", "at least 0.000012 (one a day)"),
    # Twilio's shared signing keys
    (
        "SASTRE_TWILIO_WEBHOOK_KEYS",
        "webhooks_sharedkey_a",
        "entry 1 is not <SharedKey id>=<secret>",
    ),
    ("SASTRE_TWILIO_WEBHOOK_KEYS", "k1=s1,=s2", "entry 2 is not <SharedKey id>=<secret>"),
    ("SASTRE_TWILIO_WEBHOOK_KEYS", "my key=s1", "entry 1: a SharedKey id is letters"),
    ("SASTRE_TWILIO_WEBHOOK_KEYS", "k1=s1,k1=s2", "entry 2 names the same SharedKey"),
    # secrets
    ("SASTRE_SECRET_KEY", "short", "at least 16"),
    ("SASTRE_WEBCHAT_IDENTITY_SECRET", "short", "at least 16"),
]


@pytest.mark.parametrize(("variable", "value", "reason"), BAD_VALUES)
def test_a_bad_value_names_its_variable_and_the_reason(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)
    message = str(raised.value)
    assert variable in message
    assert reason in message
    assert "\n" not in message


def test_a_secret_is_never_repeated_in_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SASTRE_SECRET_KEY", "tiny-pw")
    monkeypatch.setenv("SASTRE_DATABASE_URL", "mysql://app:db-pw-123@db/sastre")
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)
    assert "tiny-pw" not in str(raised.value)
    assert "db-pw-123" not in str(raised.value)


@pytest.mark.parametrize(
    "value",
    [
        "k1=hush-hush-1,k1=hush-hush-2",  # the same id twice
        "hush+hush/secret==",  # a secret pasted without its id
        "hush hush=webhooks_sharedkey_a",  # the two the wrong way round
    ],
)
def test_a_shared_key_s_secret_is_never_repeated_in_an_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SASTRE_TWILIO_WEBHOOK_KEYS", value)
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)
    assert "SASTRE_TWILIO_WEBHOOK_KEYS" in str(raised.value)
    assert "hush" not in str(raised.value)


def test_shared_keys_are_read_by_id_and_a_secret_may_hold_equals_signs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    twilio = {
        "SASTRE_TWILIO_ACCOUNT_SID": ACCOUNT,
        "SASTRE_TWILIO_AUTH_TOKEN": "tok-secret-99",
        "SASTRE_TWILIO_FROM": "+14155550100",
        "SASTRE_PUBLIC_URL": "https://hub.example.com",
        "SASTRE_TWILIO_WEBHOOK_KEYS": " webhooks_sharedkey_A = c2VjcmV0== , k2=s2 ",
    }
    for name, value in twilio.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(_env_file=None)
    assert settings.twilio_webhook_keys is not None
    keys = parse_webhook_keys(settings.twilio_webhook_keys.get_secret_value())
    assert keys == {"webhooks_sharedkey_A": "c2VjcmV0==", "k2": "s2"}
    assert "c2VjcmV0" not in repr(settings)


def test_every_wrong_value_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SASTRE_DEFAULT_TIMEZONE", "Mars/Base")
    monkeypatch.setenv("SASTRE_DEFAULT_LANGUAGE", "xx")
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)
    assert "SASTRE_DEFAULT_TIMEZONE" in str(raised.value)
    assert "SASTRE_DEFAULT_LANGUAGE" in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value", "field", "kept"),
    [
        ("SASTRE_DEFAULT_TIMEZONE", "America/Argentina/Buenos_Aires", "default_timezone", None),
        ("SASTRE_DEFAULT_LANGUAGE", " ES ", "default_language", "es"),
        ("SASTRE_LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("SASTRE_HOST", "::", "host", None),
        ("SASTRE_HOST", "sastre.internal", "host", None),
        ("SASTRE_REDIS_URL", "rediss://:pw@cache.example:6380/2", "redis_url", None),
        ("SASTRE_REDIS_URL", "unix:///run/redis.sock", "redis_url", None),
        ("SASTRE_REDIS_URL", "", "redis_url", ""),
        ("SASTRE_RASA_URL", "http://rasa:5005/", "rasa_url", "http://rasa:5005"),
        ("SASTRE_WEBCHAT_ORIGINS", "*, https://shop.example:8443", "webchat_origins", None),
        ("SASTRE_TOPICS", "offers, New-Products,newsletter_es", "topics", None),
        ("SASTRE_BRAND_NAME", " Sastrería Ruiz ", "brand_name", "Sastrería Ruiz"),
        ("SASTRE_TIER_CMV_PROFIT_SHARE", "1", "tier_cmv_profit_share", 1.0),
    ],
)
def test_a_good_value_is_accepted(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, kept: object
) -> None:
    monkeypatch.setenv(variable, value)
    expected = value if kept is None else (kept or None)
    assert getattr(load_settings(_env_file=None), field) == expected


def test_an_empty_secret_is_an_unset_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SASTRE_WEBCHAT_IDENTITY_SECRET", "")
    assert load_settings(_env_file=None).webchat_identity_secret is None


def test_sastre_speaks_the_languages_the_dialog_understands() -> None:
    """The default language is checked against the catalogue: the dialog reads those languages."""
    from dialog.nlu import LANGUAGES

    assert available_languages() == set(LANGUAGES)


def test_a_language_with_a_catalogue_is_a_valid_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A third language is a catalogue file: the setting accepts it with no code change."""
    french = tmp_path / "fr" / "LC_MESSAGES"
    french.mkdir(parents=True)
    (french / "messages.po").write_text('msgid ""\nmsgstr ""\n', encoding="utf-8")
    monkeypatch.setattr(catalogue, "LOCALE_DIR", tmp_path)
    catalogue.available_languages.cache_clear()
    monkeypatch.setenv("SASTRE_DEFAULT_LANGUAGE", "fr")
    try:
        assert load_settings(_env_file=None).default_language == "fr"
    finally:
        monkeypatch.undo()
        catalogue.available_languages.cache_clear()


def test_settings_are_frozen() -> None:
    settings = load_settings(_env_file=None)
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


def test_development_generates_and_keeps_a_secret_key(tmp_path: Path) -> None:
    first = load_settings(_env_file=None).secret()
    second = load_settings(_env_file=None).secret()
    assert first == second
    assert len(first) >= 32
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("kept", "reason"),
    [(b"", "holds no key"), (b"short\n", "holds no key"), (b"\xff\xfe" * 20, "not text")],
)
def test_a_kept_secret_key_that_is_no_key_stops_start_up(
    tmp_path: Path, kept: bytes, reason: str
) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "secret_key").write_bytes(kept)
    with pytest.raises(ConfigError, match=f"SASTRE_SECRET_KEY is unset and .* {reason}"):
        load_settings(_env_file=None)


def test_quiet_hours_take_any_country_a_customer_may_have(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pitcairn has no phone numbering of its own, but is a country a customer may live in.
    monkeypatch.setenv("SASTRE_QUIET_HOURS", "PN=09:00-20:00,US-TX=09:00-21:00")
    assert set(load_settings(_env_file=None).quiet_hour_overrides) == {"PN", "US-TX"}


def test_a_kept_secret_key_that_is_a_directory_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "var" / "secret_key").mkdir(parents=True)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(_env_file=None)


def test_production_requires_a_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SASTRE_ENV", "production")
    with pytest.raises(ConfigError, match="SASTRE_SECRET_KEY is required"):
        load_settings(_env_file=None)
    monkeypatch.setenv("SASTRE_SECRET_KEY", "s3cret-s3cret-s3cret")
    assert load_settings(_env_file=None).env is Environment.PRODUCTION


def test_secrets_are_masked_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SASTRE_SECRET_KEY", "top-secret-value")
    monkeypatch.setenv("SASTRE_DATABASE_URL", "postgresql+asyncpg://app:pw-123@db/sastre")
    monkeypatch.setenv("SASTRE_REDIS_URL", "redis://:redis-pw@cache:6379/0")
    settings = load_settings(_env_file=None)
    shown = repr(settings) + str(settings.masked())
    for secret in ("top-secret-value", "pw-123", "redis-pw"):
        assert secret not in shown
    assert "app:***@db" in shown


def test_quiet_hour_overrides_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SASTRE_QUIET_HOURS", "GB=09:00-20:00, us-tx=09:00-21:00")
    overrides = load_settings(_env_file=None).quiet_hour_overrides
    assert set(overrides) == {"GB", "US-TX"}
    assert overrides["GB"].end.hour == 20


def test_bad_quiet_hours_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SASTRE_QUIET_HOURS", "GB=nine-to-five")
    with pytest.raises(ConfigError, match="SASTRE_QUIET_HOURS"):
        load_settings(_env_file=None)


# --- SMS through Twilio ---------------------------------------------------------------------------

ACCOUNT = "AC" + "0123456789abcdef" * 2


@pytest.mark.parametrize(
    ("variables", "reason"),
    [
        (
            {"SASTRE_TWILIO_ACCOUNT_SID": "AC123"},
            "SASTRE_TWILIO_ACCOUNT_SID='AC123': is not a Twilio",
        ),
        (
            {"SASTRE_TWILIO_MESSAGING_SERVICE_SID": ACCOUNT},
            "SASTRE_TWILIO_MESSAGING_SERVICE_SID",
        ),
        ({"SASTRE_TWILIO_FROM": "call me maybe!"}, "SASTRE_TWILIO_FROM"),
        ({"SASTRE_TWILIO_API_BASE": "api.twilio.com"}, "SASTRE_TWILIO_API_BASE"),
        ({"SASTRE_TWILIO_ACCOUNT_SID": ACCOUNT}, "SASTRE_TWILIO_AUTH_TOKEN is required"),
        (
            {"SASTRE_TWILIO_ACCOUNT_SID": ACCOUNT, "SASTRE_TWILIO_AUTH_TOKEN": "tok-secret-99"},
            "SASTRE_TWILIO_FROM or SASTRE_TWILIO_MESSAGING_SERVICE_SID is required",
        ),
        # Half a configuration from the other side: SMS must not be silently off.
        (
            {"SASTRE_TWILIO_AUTH_TOKEN": "tok-secret-99", "SASTRE_TWILIO_FROM": "+14155550100"},
            "SASTRE_TWILIO_ACCOUNT_SID is required with SASTRE_TWILIO_AUTH_TOKEN",
        ),
        ({"SASTRE_TWILIO_FROM": "+14155550100"}, "SASTRE_TWILIO_ACCOUNT_SID is required"),
        (
            {"SASTRE_TWILIO_MESSAGING_SERVICE_SID": "MG" + "0" * 32},
            "SASTRE_TWILIO_ACCOUNT_SID is required",
        ),
        (
            {"SASTRE_TWILIO_WEBHOOK_KEYS": "webhooks_sharedkey_a=tok-secret-99"},
            "SASTRE_TWILIO_ACCOUNT_SID is required with SASTRE_TWILIO_WEBHOOK_KEYS",
        ),
        # Twilio configured, but nowhere for its webhooks to reach us.
        (
            {
                "SASTRE_TWILIO_ACCOUNT_SID": ACCOUNT,
                "SASTRE_TWILIO_AUTH_TOKEN": "tok-secret-99",
                "SASTRE_TWILIO_FROM": "+14155550100",
            },
            "SASTRE_PUBLIC_URL is required for SMS",
        ),
    ],
)
def test_a_wrong_twilio_setting_stops_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], reason: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)
    assert reason in str(raised.value)
    assert "tok-secret-99" not in str(raised.value)


@pytest.mark.parametrize(
    ("sender", "kept"),
    [("+1 (415) 555-0100", "+14155550100"), ("Sastre", "Sastre"), ("12345", "12345")],
)
def test_sms_is_on_with_an_account_a_token_and_a_sender(
    monkeypatch: pytest.MonkeyPatch, sender: str, kept: str
) -> None:
    monkeypatch.setenv("SASTRE_TWILIO_ACCOUNT_SID", ACCOUNT)
    monkeypatch.setenv("SASTRE_TWILIO_AUTH_TOKEN", "tok-secret-99")
    monkeypatch.setenv("SASTRE_TWILIO_FROM", sender)
    monkeypatch.setenv("SASTRE_PUBLIC_URL", "https://crm.example.com")
    settings = load_settings(_env_file=None)
    assert settings.sms_enabled
    assert settings.twilio_from == kept
    assert settings.twilio_api_base == "https://api.twilio.com"
    assert "tok-secret-99" not in repr(settings)
    assert settings.masked()["twilio_auth_token"] == "**********"


def test_sms_is_off_by_default() -> None:
    assert not load_settings(_env_file=None).sms_enabled
