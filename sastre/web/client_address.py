"""Who is at the other end of a request, for limits that count per client.

Behind a reverse proxy every connection comes from the proxy, and the client's address is in
`X-Forwarded-For`, which each proxy extends on the right with the address it was connected from.
Only the entries added by proxies we trust are true: anything further left was written by the
client and may be invented. So the chain is read from the right, starting with the connecting
peer, past trusted proxies, and the first address that is not one of them is the client's
(`SASTRE_TRUSTED_PROXIES`; empty means no proxy is believed and the peer is the client).

IPv6 clients are counted by their /64: one subscriber usually holds a whole /64 and could
otherwise draw a fresh address for every request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

from aiohttp import hdrs, web

from sastre.config import IPNetwork

__all__ = ["IPV6_PREFIX", "UNKNOWN", "client_address", "limit_key", "request_client"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPV6_PREFIX: Final = 64
# A peer without an address (a Unix socket): only a local process, so a local proxy, can be one.
UNKNOWN: Final = "unknown"


def _parse(text: str) -> IPAddress | None:
    """An address as proxies write it: bare, "[v6]:port", or "v4:port"."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress | None, trusted: Sequence[IPNetwork]) -> bool:
    if address is None:
        return True  # a Unix socket's peer (see UNKNOWN)
    return any(address in network for network in trusted)


def client_address(
    peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[IPNetwork]
) -> str:
    """The client's address: `peer` unless it is a trusted proxy, then the X-Forwarded-For
    entries from the right, past every trusted proxy. An entry that is not an address ends the
    walk at the proxy that passed it on (nothing to its left can be believed)."""
    chain = [entry for header in forwarded_for for entry in header.split(",") if entry.strip()]
    current = _parse(peer) if peer is not None else None
    if peer is not None and current is None:
        return peer  # not an address at all: count it as it is
    while _trusted(current, trusted) and chain:
        previous = _parse(chain.pop())
        if previous is None:
            break
        current = previous
    return UNKNOWN if current is None else str(current)


def limit_key(address: str) -> str:
    """What a per-client limit counts under: the address, or its /64 for IPv6."""
    parsed = _parse(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_PREFIX}", strict=False))
    return address if parsed is None else str(parsed)


def request_client(request: web.Request, trusted: Sequence[IPNetwork]) -> str:
    """The client's address for `request` (see `client_address`)."""
    return client_address(request.remote, request.headers.getall(hdrs.X_FORWARDED_FOR, []), trusted)
