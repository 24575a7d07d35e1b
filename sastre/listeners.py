"""The service's listening sockets, taken before anything else happens.

`sastre serve` and `sastre demo` bind their port first and hand the very sockets to the web
server later. A second start on a port in use therefore stops before it migrates, loads demo
data or creates a token, and no other process can take the port in between.
"""

from __future__ import annotations

import errno
import socket

__all__ = ["BACKLOG", "PortUnavailable", "bind_listeners"]

BACKLOG = 128  # aiohttp's default; connections made while the service starts wait in it


class PortUnavailable(Exception):
    """The service cannot listen where it was told to; the message is one line for the user."""


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """Bind and listen on every address `host` resolves to, as the web server itself would.

    Raises PortUnavailable naming host:port, why, and the setting to change.
    """
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise PortUnavailable(
            f"cannot listen on {where}: {e.strerror}; set SASTRE_HOST to an address of this machine"
        ) from None
    sockets: list[socket.socket] = []
    try:
        # getaddrinfo may list an address once per protocol; bind each address once.
        for family, kind, protocol, _, address in dict.fromkeys(found):
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
                f"{where} is already in use (is Sastre already running?); stop that process "
                "or set SASTRE_PORT to a free port"
            ) from None
        raise PortUnavailable(
            f"cannot listen on {where}: {e.strerror}; set SASTRE_HOST or SASTRE_PORT"
        ) from None
    return sockets
