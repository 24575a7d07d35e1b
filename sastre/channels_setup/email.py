"""The e-mail sender from the settings: SMTP when a host and a From address are configured,
otherwise none."""

from __future__ import annotations

from channels.email import SmtpEmail
from sastre.config import Settings

__all__ = ["build_sender"]


def build_sender(settings: Settings) -> SmtpEmail | None:
    """An SMTP sender, or None when e-mail out is off. It connects on its first send; close
    what it returns when the process stops."""
    if settings.smtp_host is None or settings.email_from is None:
        return None
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpEmail(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.email_from,
        username=settings.smtp_username,
        password=password,
        tls=settings.smtp_tls,
        ca_file=settings.smtp_ca_file,
        default_subject=settings.brand_name,
        unsubscribe_mailto=settings.email_unsubscribe_mailto or settings.email_from,
        connections=settings.smtp_connections,
        # Our Message-IDs sealed with the secret key (a MAC for that purpose alone).
        id_key=settings.secret() if settings.secret_key is not None else None,
    )
