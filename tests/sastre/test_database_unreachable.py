"""A database that cannot be reached is a 503 with Retry-After (a moment, not a bug): the
webhooks' senders post again, staff clients retry. One warning line, no traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from aiohttp import ClientResponse
from pydantic import SecretStr
from sqlalchemy.exc import DBAPIError

from channels.sms_webhooks import WebhookSignature
from sastre.app import create_app
from sastre.auth import TOKEN_PREFIX
from sastre.config import Settings, load_settings
from sastre.web.errors import UNREACHABLE_RETRY_AFTER, api_error_for
from tests.sastre.conftest import Client, ClientFactory

PUBLIC = "https://sastre.example.com"
TWILIO_TOKEN = "twilio-auth-token-for-tests-0123"
EMAIL_TOKEN = "inbound-email-token-for-tests-0123456789"
SMS = {
    "MessageSid": "SM" + "a1" * 16,
    "AccountSid": "AC" + "0" * 32,
    "From": "+14155552671",
    "To": "+14155550100",
    "Body": "Where is my order?",
    "NumMedia": "0",
}
MAIL = b"From: Ana <ana@example.com>\r\nTo: help@example.com\r\nSubject: hi\r\n\r\nWhere is it?\r\n"


def _nowhere(kind: str, tmp_path: Path) -> str:
    """A database URL nothing answers at (no port involved: nothing can race for it)."""
    if kind == "sqlite":
        (tmp_path / "sastre.db").mkdir()  # a directory where the file should be: cannot open
        return f"sqlite+aiosqlite:///{tmp_path}/sastre.db"
    missing = tmp_path / "missing"
    return f"postgresql+asyncpg://sastre@/sastre?host={missing}"  # no server's socket there


@pytest.fixture(params=["sqlite", "postgresql"])
async def down(
    request: pytest.FixtureRequest, aiohttp_client: ClientFactory, tmp_path: Path
) -> Client:
    settings: Settings = load_settings(
        _env_file=None,
        database_url=_nowhere(request.param, tmp_path),
        secret_key="test-secret-key-0123456789",
        public_url=PUBLIC,
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token=SecretStr(TWILIO_TOKEN),
        twilio_from="+14155550100",
        inbound_email_token=SecretStr(EMAIL_TOKEN),
    )
    return await aiohttp_client(create_app(settings))


async def _told_to_retry(answer: ClientResponse, caplog: pytest.LogCaptureFixture) -> None:
    assert answer.status == 503, await answer.text()
    assert answer.headers["Retry-After"] == str(UNREACHABLE_RETRY_AFTER)
    body = await answer.json()
    assert body["error"] == "the database is unavailable; try again"
    assert "retry in" in body["detail"]
    logged = [r for r in caplog.records if r.name == "sastre.web.errors"]
    assert [(r.levelname, r.exc_info) for r in logged] == [("WARNING", None)]


async def test_an_sms_webhook_with_the_database_down_is_503(
    down: Client, caplog: pytest.LogCaptureFixture
) -> None:
    signature = WebhookSignature(TWILIO_TOKEN, PUBLIC).sign("/webhooks/twilio/sms", SMS)
    answer = await down.post(
        "/webhooks/twilio/sms", data=SMS, headers={"X-Twilio-Signature": signature}
    )
    await _told_to_retry(answer, caplog)


async def test_an_email_webhook_with_the_database_down_is_503(
    down: Client, caplog: pytest.LogCaptureFixture
) -> None:
    answer = await down.post(
        "/webhooks/email",
        data=MAIL,
        headers={"Authorization": f"Bearer {EMAIL_TOKEN}", "Content-Type": "message/rfc822"},
    )
    await _told_to_retry(answer, caplog)


async def test_the_staff_api_with_the_database_down_is_503(
    down: Client, caplog: pytest.LogCaptureFixture
) -> None:
    token = TOKEN_PREFIX + "0" * 43  # looks like one: checking it needs the database
    answer = await down.get("/api/customers/1", headers={"Authorization": f"Bearer {token}"})
    await _told_to_retry(answer, caplog)


def test_a_file_that_cannot_be_written_is_not_the_database() -> None:
    # An OSError that did not come through the database's driver stays a bug (a 500).
    with pytest.raises(NotADirectoryError) as raised:
        Path("/dev/null/attachment").write_bytes(b"x")
    assert api_error_for(raised.value) is None


def test_a_lost_connection_is_unreachable_but_a_bad_statement_is_a_bug() -> None:
    lost = DBAPIError("SELECT 1", {}, sqlite3.OperationalError("x"), connection_invalidated=True)
    assert api_error_for(lost) is not None
    assert api_error_for(DBAPIError("SELECT", {}, sqlite3.OperationalError("syntax"))) is None
