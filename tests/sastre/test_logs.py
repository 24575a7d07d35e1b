"""Every Sastre process logs alike, and libraries that narrate each request are held to
warnings: the Twilio client's dozen lines of HTTP per SMS, aiosmtpd's line per SMTP command."""

from __future__ import annotations

import logging

import pytest

from sastre.logs import configure_logging


@pytest.mark.parametrize(
    "name", ["twilio.http_client", "twilio.async_http_client", "mail.log", "alembic"]
)
def test_chatty_libraries_log_only_warnings(name: str) -> None:
    configure_logging("DEBUG")
    logger = logging.getLogger(name)
    assert not logger.isEnabledFor(logging.INFO)
    assert logger.isEnabledFor(logging.WARNING)
