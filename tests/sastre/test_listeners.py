"""Where the service says it listens is where its sockets are bound."""

from __future__ import annotations

import socket

from sastre.listeners import bind_listeners, bound_port, http_url, listening_urls


def test_the_urls_are_the_bound_addresses_and_ports() -> None:
    sockets = bind_listeners("127.0.0.1", 0)
    try:
        port = sockets[0].getsockname()[1]
        assert listening_urls(sockets) == [f"http://127.0.0.1:{port}"]
    finally:
        for listener in sockets:
            listener.close()


def test_an_ipv6_address_is_bracketed() -> None:
    assert http_url("::1", 8080) == "http://[::1]:8080"
    assert http_url("10.0.0.5", 8080) == "http://10.0.0.5:8080"


def test_an_address_bound_twice_is_named_once() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        assert len(listening_urls([listener, listener])) == 1


def test_port_0_gives_every_address_of_a_name_the_one_port_the_system_picked() -> None:
    sockets = bind_listeners("localhost", 0)
    try:
        assert bound_port(sockets) != 0
        assert {listener.getsockname()[1] for listener in sockets} == {bound_port(sockets)}
    finally:
        for listener in sockets:
            listener.close()
