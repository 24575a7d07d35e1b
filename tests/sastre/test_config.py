"""Configuration: read once, typed, frozen, failing fast, secrets masked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from sastre import config
from sastre.config import ConfigError, Environment, load_settings


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


def test_a_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SASTRE_PORT=9100\n")
    assert load_settings().port == 9100


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SASTRE_PORT", "http"),
        ("SASTRE_PORT", "70000"),
        ("SASTRE_DATABASE_URL", "mysql://localhost/db"),
        ("SASTRE_REDIS_URL", "localhost:6379"),
        ("SASTRE_DEFAULT_REGION", "XX"),
        ("SASTRE_PUBLIC_URL", "hub.example.com"),
        ("SASTRE_TIER_CMV_PROFIT_SHARE", "1.5"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings(_env_file=None)


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
