"""The client's address behind proxies, and the key per-client limits count under."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from sastre.config import parse_networks
from sastre.web.client_address import UNKNOWN, client_address, limit_key

PROXIES = parse_networks("10.0.0.0/8, ::1")
addresses = st.ip_addresses().map(str)


def plain(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as the client's is given: an IPv4-mapped IPv6 address as IPv4."""
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_address("203.0.113.5", ["198.51.100.1"], ()) == "203.0.113.5"


def test_a_trusted_proxy_hands_over_to_the_address_it_was_connected_from() -> None:
    # The client wrote the first entry itself; our proxies added the last two.
    chain = ["6.6.6.6, 203.0.113.5", "10.0.0.7"]
    assert client_address("10.0.0.1", chain, PROXIES) == "203.0.113.5"


def test_an_entry_that_is_no_address_stops_at_the_proxy_that_passed_it() -> None:
    assert client_address("10.0.0.1", ["unknown"], PROXIES) == "10.0.0.1"


def test_proxies_write_ports_and_brackets_too() -> None:
    assert client_address("::1", ["[2001:db8::5]:4711"], PROXIES) == "2001:db8::5"
    assert client_address("::1", ["203.0.113.5:4711"], PROXIES) == "203.0.113.5"


def test_a_unix_socket_peer_is_a_local_proxy() -> None:
    assert client_address(None, ["203.0.113.5"], ()) == "203.0.113.5"
    assert client_address(None, [], ()) == UNKNOWN


def test_ipv6_clients_are_counted_by_their_64() -> None:
    assert limit_key("2001:db8:1:2:aaaa::1") == limit_key("2001:db8:1:2:bbbb::9")
    assert limit_key("2001:db8:1:2::1") != limit_key("2001:db8:1:3::1")
    assert limit_key("::ffff:203.0.113.5") == "203.0.113.5"
    assert limit_key("203.0.113.5") == "203.0.113.5"


@given(peer=addresses, forwarded=st.lists(addresses, max_size=4))
def test_an_untrusted_peer_is_the_client_whatever_it_forwards(
    peer: str, forwarded: list[str]
) -> None:
    if any(plain(peer) in network for network in PROXIES):
        return
    assert client_address(peer, [", ".join(forwarded)], PROXIES) == str(plain(peer))


@given(peer=addresses, forwarded=st.lists(addresses, max_size=4))
def test_the_client_is_the_peer_or_a_forwarded_entry(peer: str, forwarded: list[str]) -> None:
    found = client_address(peer, [", ".join(forwarded)], PROXIES)
    assert found in {str(plain(a)) for a in [peer, *forwarded]}
