"""Which peers of the SMTP listener are the trusted relay (`SASTRE_EMAIL_RELAY_NETWORKS`)."""

from __future__ import annotations

import ipaddress

from sastre.email_listener import _within

RELAYS = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")]


def test_a_peer_in_a_relay_network_is_the_relay() -> None:
    assert _within("10.0.0.5", RELAYS)
    assert _within("2001:db8::25", RELAYS)
    assert not _within("192.0.2.7", RELAYS)


def test_an_ipv4_relay_seen_by_a_listener_on_all_ipv6_addresses_is_the_relay() -> None:
    """A listener bound to "::" sees IPv4 peers as ::ffff:a.b.c.d."""
    assert _within("::ffff:10.0.0.5", RELAYS)
    assert not _within("::ffff:192.0.2.7", RELAYS)


def test_a_peer_that_is_no_address_is_not_the_relay() -> None:
    assert not _within("unix-socket", RELAYS)
    assert _within("fe80::1%eth0", [ipaddress.ip_network("fe80::/10")])  # its zone names no net
