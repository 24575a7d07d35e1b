"""The e-mail settings: each wrong value stops start-up naming its variable; secrets never shown;
the sender is built only when a host and a From address are set."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.base import ChannelName, OutboundMessage
from channels.email import SmtpEmail
from sastre.channels_setup.email import build_sender
from sastre.config import ConfigError, load_settings
from tests.support.smtp_peer import TLS_CA, smtp_peer


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"smtp_listen": "8025"}, "SASTRE_SMTP_LISTEN"),
        ({"smtp_host": "not a host!"}, "SASTRE_SMTP_HOST"),
        ({"smtp_tls": "sometimes"}, "SASTRE_SMTP_TLS"),
        ({"smtp_ca_file": "/nonexistent/ca.pem"}, "SASTRE_SMTP_CA_FILE"),
        ({"smtp_ca_file": TLS_CA, "smtp_tls": "none"}, "SASTRE_SMTP_CA_FILE is for TLS"),
        ({"smtp_port": "0"}, "SASTRE_SMTP_PORT"),
        ({"smtp_connections": "0"}, "SASTRE_SMTP_CONNECTIONS"),
        ({"email_from": "Tienda"}, "SASTRE_EMAIL_FROM"),
        ({"email_trusted_relays": "mx.ok.example, not/a/host"}, "SASTRE_EMAIL_TRUSTED_RELAYS"),
        ({"email_relay_networks": "10.0.0.0/8, mx.example"}, "SASTRE_EMAIL_RELAY_NETWORKS"),
        ({"inbound_email_token": "short"}, "SASTRE_INBOUND_EMAIL_TOKEN"),
        ({"postal_address": "Calle Mayor 1\x1b[2J"}, "SASTRE_POSTAL_ADDRESS"),
        ({"postal_address": "Calle Mayor " + "1" * 300}, "SASTRE_POSTAL_ADDRESS"),
        ({"smtp_host": "smtp.example.com"}, "SASTRE_EMAIL_FROM is required"),
        # A login needs both halves, and a server to log in to.
        (
            {"smtp_host": "smtp.example.com", "email_from": "a@b.example", "smtp_username": "u"},
            "SASTRE_SMTP_PASSWORD is required with SASTRE_SMTP_USERNAME",
        ),
        (
            {"smtp_host": "smtp.example.com", "email_from": "a@b.example", "smtp_password": "pw"},
            "SASTRE_SMTP_USERNAME is required with SASTRE_SMTP_PASSWORD",
        ),
        (
            {"smtp_username": "u", "smtp_password": "pw"},
            "SASTRE_SMTP_HOST is required with SASTRE_SMTP_USERNAME",
        ),
    ],
)
def test_a_wrong_value_names_its_variable(overrides: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, **overrides)
    assert named in str(raised.value)


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ("  Tienda SL, Calle Mayor 1, 28013 Madrid  ", "Tienda SL, Calle Mayor 1, 28013 Madrid"),
        # Written on several lines (a quoted value in .env): one line in the e-mail's footer.
        ("Tienda SL\n  Calle Mayor 1\n\n28013  Madrid\n", "Tienda SL, Calle Mayor 1, 28013 Madrid"),
        ("   ", None),  # unset: marketing e-mail is refused, saying so
    ],
)
def test_the_postal_address_is_one_line_or_unset(written: str, kept: str | None) -> None:
    assert load_settings(_env_file=None, postal_address=written).postal_address == kept
    assert load_settings(_env_file=None).postal_address is None


def test_the_inbound_token_is_never_shown() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, inbound_email_token="tiny-secret")
    assert "tiny-secret" not in str(raised.value)
    settings = load_settings(
        _env_file=None,
        inbound_email_token="x" * 20,
        smtp_host="smtp.example.com",
        email_from="hola@tienda.example",
        smtp_username="tienda",
        smtp_password="hunter2-password",
    )
    assert "hunter2" not in repr(settings)
    assert "x" * 20 not in repr(settings)


def test_email_is_off_until_configured() -> None:
    settings = load_settings(_env_file=None)
    assert settings.smtp_listen is None
    assert not settings.email_enabled
    assert build_sender(settings) is None


def test_the_sender_is_built_from_the_settings() -> None:
    settings = load_settings(
        _env_file=None,
        smtp_host="smtp.example.com",
        smtp_port="465",
        smtp_tls="ssl",
        email_from="Tienda <hola@tienda.example>",
        email_trusted_relays="MX.Relay.example,mx2.relay.example",
        smtp_listen="127.0.0.1:8025",
        smtp_connections="16",
    )
    sender = build_sender(settings)
    assert isinstance(sender, SmtpEmail)
    assert sender.domain == "tienda.example"
    assert sender.connections == 16
    assert settings.email_trusted_relay_list == ["mx.relay.example", "mx2.relay.example"]
    assert settings.smtp_listen == "127.0.0.1:8025"


def test_an_attachments_directory_that_cannot_be_written_names_its_variable(tmp_path: Path) -> None:
    a_file = tmp_path / "not-a-directory"
    a_file.write_text("x")
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, email_attachments_dir=str(a_file / "attachments"))
    message = str(raised.value)
    assert "SASTRE_EMAIL_ATTACHMENTS_DIR" in message
    assert f"{a_file} is not a directory" in message


def test_an_attachments_directory_yet_to_be_made_is_accepted_and_not_made(tmp_path: Path) -> None:
    wanted = tmp_path / "var" / "attachments"
    settings = load_settings(_env_file=None, email_attachments_dir=f" {wanted} ")
    assert settings.email_attachments_dir == str(wanted)
    assert not (tmp_path / "var").exists()  # checking settings changes nothing


def test_a_ca_file_without_certificates_names_its_variable(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("these are not the certificates you are looking for\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, smtp_ca_file=str(not_pem))
    message = str(raised.value)
    assert "SASTRE_SMTP_CA_FILE" in message
    assert "not PEM certificates" in message


async def test_the_ca_file_vouches_for_a_server_a_private_authority_certified() -> None:
    async with smtp_peer(tls="starttls") as peer:
        settings = load_settings(
            _env_file=None,
            smtp_host="127.0.0.1",
            smtp_port=str(peer.port),
            smtp_ca_file=TLS_CA,
            email_from="Tienda <hola@tienda.example>",
        )
        sender = build_sender(settings)
        assert sender is not None
        async with sender:
            await sender.send(
                OutboundMessage(
                    channel=ChannelName.EMAIL,
                    address="lucia.moreno@example.org",
                    text="Hola",
                    reference="7",
                )
            )
    (received,) = peer.received
    assert received.encrypted
