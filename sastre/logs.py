"""Logging as every Sastre process sets it up: the CLI's commands, and the outbox worker that
`sastre serve` and `sastre demo` spawn (a spawned interpreter inherits none of its parent's
logging, so it calls this too).

Libraries that narrate every step at INFO are held to WARNING: the Twilio client logs a dozen
lines of HTTP headers per SMS, aiosmtpd one line per SMTP command, Alembic each check. Their
failures still show.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

__all__ = ["FORMAT", "QUIETED", "configure_logging"]

FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIETED: Final[Mapping[str, int]] = {
    "alembic": logging.WARNING,
    "twilio.http_client": logging.WARNING,
    "twilio.async_http_client": logging.WARNING,
    "mail.log": logging.WARNING,  # aiosmtpd, the SMTP listener
}


def configure_logging(level: str) -> None:
    """Log at `level` (SASTRE_LOG_LEVEL) to standard error, one line per record."""
    logging.basicConfig(level=level.upper(), format=FORMAT)
    for name, quieter in QUIETED.items():
        logging.getLogger(name).setLevel(quieter)
