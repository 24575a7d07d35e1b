"""The service's listening sockets, taken before anything else happens.

`sastre serve`, `sastre demo` and `sastre actions` bind their port first (serve and demo their
SMTP listener's too, SASTRE_SMTP_LISTEN) and hand the very sockets to their server later. A
second start on a port in use therefore stops before it migrates, loads demo data or creates a
token, and no other process can take the port in between.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

__all__ = [
    "BACKLOG",
    "SASTRE",
    "SMTP_LISTENER",
    "PortUnavailable",
    "Service",
    "bind_listener",
    "bind_listeners",
    "bound_port",
    "http_url",
    "listening_urls",
]

BACKLOG = 128  # aiohttp's default; connections made while the service starts wait in it


class PortUnavailable(Exception):
    """The service cannot listen where it was told to; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class Service:
    """What the one-line refusal names: the service, and where its host and port are set."""

    name: str
    host_setting: str
    port_setting: str


SASTRE = Service("Sastre", "SASTRE_HOST", "SASTRE_PORT")
SMTP_LISTENER = Service("Sastre's SMTP listener", "SASTRE_SMTP_LISTEN", "SASTRE_SMTP_LISTEN")


def bind_listeners(host: str, port: int, service: Service = SASTRE) -> list[socket.socket]:
    """Bind and listen on every address `host` resolves to, as the web server itself would.

    Raises PortUnavailable naming host:port, why, and the setting to change.
    """
    return _bind(host, port, service, every_address=True)


def bind_listener(host: str, port: int, service: Service = SASTRE) -> socket.socket:
    """One listening socket, for a server that takes only one (rasa-sdk's, on Sanic): the first
    address `host` resolves to, in the system's order of preference. Raises PortUnavailable."""
    return _bind(host, port, service, every_address=False)[0]


def _bind(host: str, port: int, service: Service, *, every_address: bool) -> list[socket.socket]:
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise PortUnavailable(
            f"cannot listen on {where}: {e.strerror}; "
            f"set {service.host_setting} to an address of this machine"
        ) from None
    # getaddrinfo may list an address once per protocol; bind each address once.
    addresses = list(dict.fromkeys(found))
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, _, address in addresses if every_address else addresses[:1]:
            if port == 0 and sockets:
                # Port 0: the system picked one for the first address; the others (localhost's
                # ::1 beside 127.0.0.1) take the same, so the service has one port.
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            listener = socket.socket(family, kind, protocol)
            sockets.append(listener)
            # As asyncio does: a restart may reuse a port whose old connections linger in
            # TIME_WAIT, and an IPv6 socket does not also take the IPv4 port.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
            listener.listen(BACKLOG)
    except OSError as e:
        for listener in sockets:
            listener.close()
        if e.errno == errno.EADDRINUSE:
            raise PortUnavailable(
                f"{where} is already in use (is {service.name} already running?); stop that "
                f"process or set {service.port_setting} to a free port"
            ) from None
        settings = dict.fromkeys((service.host_setting, service.port_setting))  # one if alike
        raise PortUnavailable(
            f"cannot listen on {where}: {e.strerror}; set {' or '.join(settings)}"
        ) from None
    return sockets


def bound_port(sockets: list[socket.socket]) -> int:
    """The port the sockets listen on: the one asked for, or the one the system picked for 0."""
    return int(sockets[0].getsockname()[1])


def http_url(host: str, port: int) -> str:
    """http://host:port, with an IPv6 address in brackets."""
    return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"


def listening_urls(sockets: list[socket.socket]) -> list[str]:
    """Where the sockets really listen, one URL per bound address (a host name such as
    localhost may have bound two): what an operator on this machine can connect to."""
    return list(dict.fromkeys(http_url(*listener.getsockname()[:2]) for listener in sockets))
