"""E-mail in, in the app's lifecycle: the intake both doors share, and the SMTP listener
(`SASTRE_SMTP_LISTEN`, off when unset), opened after the inbound path and closed before it
drains, so every message it acknowledged is written.

`sastre serve` and `sastre demo` bind the listener's socket with the HTTP one, before anything
changes (`SMTP_SOCKET`): a port in use stops them in one line. Without one (tests) it binds here.
Both doors take messages up to SASTRE_EMAIL_MAX_BYTES."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from functools import partial

from aiohttp import web

from channels.email import Delivery, Refused, TryLater, listen, parse_listen
from channels.email.proof import DnsFunc
from channels.email.smtp_in import bound_port
from dialog.turns import BotUnanswered
from sastre.appkeys import INBOUND, READER, SESSIONMAKER, SETTINGS
from sastre.config import IPNetwork
from sastre.email_intake import EmailIntake, NoSender, intake_for

__all__ = ["EMAIL_DNS", "EMAIL_INTAKE", "SMTP_PORT", "SMTP_SOCKET", "deliver", "email_inbound"]

log = logging.getLogger(__name__)

EMAIL_INTAKE = web.AppKey("email_intake", EmailIntake)
# DKIM's key look-ups: set before start-up to answer with test keys; unset, the real DNS.
EMAIL_DNS: web.AppKey[DnsFunc | None] = web.AppKey("email_dns")
# The port the SMTP listener took (SASTRE_SMTP_LISTEN with port 0 takes any free one).
SMTP_PORT: web.AppKey[int | None] = web.AppKey("smtp_port")
# The SMTP listener's socket, already bound and listening (set before start-up by the command).
SMTP_SOCKET: web.AppKey[socket.socket | None] = web.AppKey("smtp_socket")


async def deliver(
    intake: EmailIntake, delivery: Delivery, relay_networks: Sequence[IPNetwork] = ()
) -> None:
    """The listener's callback: stored when it returns (with no usable sender, as unattributed).

    A trusted relay's Authentication-Results count only on mail the relay itself delivered,
    from `relay_networks` (SASTRE_EMAIL_RELAY_NETWORKS): anyone else reaching the listener
    could put a header naming the relay on top. From elsewhere, only DKIM proves a sender."""
    try:
        await intake.take(
            delivery.raw,
            envelope_from=delivery.mail_from,
            relayed=_within(delivery.peer, relay_networks),
        )
    except NoSender as error:
        raise Refused(str(error)) from error
    except BotUnanswered as error:
        raise TryLater(str(error)) from error


def _within(peer: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])  # an IPv6 zone names no network
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # A listener on "::" sees an IPv4 relay as ::ffff:a.b.c.d: its networks are IPv4.
        address = address.ipv4_mapped
    return any(address in network for network in networks)


async def email_inbound(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    intake = intake_for(
        settings, app[INBOUND], app[SESSIONMAKER], app[READER], dnsfunc=app.get(EMAIL_DNS)
    )
    app[EMAIL_INTAKE] = intake
    app[SMTP_PORT] = None
    if settings.smtp_listen is None:
        yield
        return
    host, port = parse_listen(settings.smtp_listen)
    server = await listen(
        partial(deliver, intake, relay_networks=settings.email_relay_network_list),
        host,
        port,
        max_size=settings.email_max_bytes,
        sock=app.get(SMTP_SOCKET),
    )
    app[SMTP_PORT] = bound_port(server)
    log.info("receiving e-mail by SMTP on %s:%d", host, app[SMTP_PORT])
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()
