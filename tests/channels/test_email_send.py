"""`SmtpEmail` against aiosmtpd on 127.0.0.1: what goes on the wire, and SMTP's answers as
DeliveryFailed (4xx and connection errors may be retried, 5xx not)."""

from __future__ import annotations

import asyncio
import re
import socket
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

import pytest
from aiosmtplib.email import flatten_message

from channels.base import ChannelName, DeliveryFailed, OutboundMessage
from channels.email.send import SMTPUTF8_MISSING, SmtpEmail, build_message, message_id_for
from tests.support.smtp_peer import TLS_CA, SmtpPeer, smtp_peer

SENDER = "Tienda <hola@tienda.example>"


def email(**fields: object) -> OutboundMessage:
    values: dict[str, object] = {
        "channel": ChannelName.EMAIL,
        "address": "lucia.moreno@example.org",
        "text": "Hola Lucía, tu pedido está en camino.",
        "reference": "42",
    }
    values.update(fields)
    return OutboundMessage(**values)  # type: ignore[arg-type]


def sender_for(peer: SmtpPeer, **options: object) -> SmtpEmail:
    settings: dict[str, object] = {
        "unsubscribe_mailto": "baja@tienda.example",
        "tls": "none",
        **options,
    }
    return SmtpEmail(
        host="127.0.0.1",
        port=peer.port,
        sender=SENDER,
        default_subject="Tienda",
        **settings,  # type: ignore[arg-type]
    )


async def test_a_text_message_with_our_message_id() -> None:
    async with smtp_peer() as peer, sender_for(peer) as smtp:
        provider_id = await smtp.send(email())
    (received,) = peer.received
    message = received.message
    assert provider_id == "sastre.42@tienda.example"
    assert message["Message-ID"] == "<sastre.42@tienda.example>"
    assert received.mail_from == "hola@tienda.example"
    assert received.recipients == ("lucia.moreno@example.org",)
    assert message["From"] == SENDER
    assert message["Subject"] == "Tienda"
    assert message.get_content_type() == "multipart/alternative"  # text, and HTML made from it
    text = message.get_body(("plain",))
    assert text is not None
    assert text.get_content().strip() == "Hola Lucía, tu pedido está en camino."
    assert message["List-Unsubscribe"] is None  # service mail: no unsubscribe headers


async def test_without_a_reference_a_fresh_message_id_in_our_domain() -> None:
    async with smtp_peer() as peer, sender_for(peer) as smtp:
        first = await smtp.send(email(reference=""))
        second = await smtp.send(email(reference=""))
    assert first != second
    assert first.endswith("@tienda.example")
    assert second.endswith("@tienda.example")


async def test_text_and_html_parts() -> None:
    async with smtp_peer() as peer, sender_for(peer) as smtp:
        await smtp.send(email(html="<p>Hola <b>Lucía</b></p>", subject="Tu pedido"))
    message = peer.received[0].message
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None
    assert "tu pedido está en camino" in plain.get_content()
    assert html is not None
    assert "<b>Lucía</b>" in html.get_content()
    assert message["Subject"] == "Tu pedido"


async def test_a_reply_carries_the_threading_headers() -> None:
    async with smtp_peer() as peer, sender_for(peer) as smtp:
        await smtp.send(
            email(
                in_reply_to="AM0PR02MB5523E1C0FFEE0000@example.org",
                references=("sastre.first.0001@tienda.example",),
                subject="Re: Tu pedido",
            )
        )
    message = peer.received[0].message
    assert message["In-Reply-To"] == "<AM0PR02MB5523E1C0FFEE0000@example.org>"
    assert message["References"].split() == [
        "<sastre.first.0001@tienda.example>",
        "<AM0PR02MB5523E1C0FFEE0000@example.org>",
    ]


@pytest.mark.parametrize(
    "odd",
    [
        # A vertical tab or U+2028: the stdlib refuses it in any header (a line break to it),
        # and every answer in that thread failed to be built.
        "a\x0bb@example.org",
        "a\u2028b@example.org",
        "a\x85b@example.org",
        # An id cannot be folded: one of 3,000 characters made an In-Reply-To line longer than
        # RFC 5322's 998, which strict servers refuse.
        "a" * 3000 + "@example.org",
    ],
)
def test_an_id_no_header_can_hold_is_left_out_of_the_threading_headers(odd: str) -> None:
    built = build_message(
        email(in_reply_to=odd, references=("sastre.1@tienda.example", odd)),
        sender=SENDER,
        domain="tienda.example",
        default_subject="Tienda",
    )
    assert built["In-Reply-To"] is None
    assert str(built["References"]) == "<sastre.1@tienda.example>"
    assert max(map(len, built.as_bytes().split(b"\r\n"))) <= 998  # it can be written


async def test_a_utf8_message_id_is_threaded_where_the_server_takes_utf8_headers() -> None:
    """RFC 6532 allows UTF-8 in a Message-ID. Written as RFC 2047 encoded words it would be no
    id at all: where the server has no SMTPUTF8 it is left out instead."""
    built = build_message(
        email(in_reply_to="pedido.ñandú.1@ejemplo.es"),
        sender=SENDER,
        domain="tienda.example",
        default_subject="Tienda",
    )
    plain = flatten_message(built)  # what aiosmtplib writes for a server without SMTPUTF8
    assert b"=?" not in plain.split(b"\r\n\r\n", 1)[0]
    assert b"In-Reply-To" not in plain
    utf8 = flatten_message(built, utf8=True)
    assert "In-Reply-To: <pedido.ñandú.1@ejemplo.es>\r\n".encode() in utf8


async def test_marketing_mail_has_one_click_unsubscribe() -> None:
    url = "https://sastre.example.com/u/abc.def"
    async with smtp_peer() as peer, sender_for(peer) as smtp:
        await smtp.send(email(unsubscribe_url=url))
    message = peer.received[0].message
    assert message["List-Unsubscribe"] == (
        f"<{url}>, <mailto:baja@tienda.example?subject=unsubscribe>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_long_ids_and_links_go_on_the_wire_as_written_folded_between_them() -> None:
    """A Microsoft 365 Message-ID and a signed link are longer than a line: folded only between
    tokens, never into RFC 2047 encoded words (which nothing matches, and no mailbox offers)."""
    outlook = "AM6PR08MB4423A1B2C3D4E5F6A7B8C9D0E1F2A3B4@AM6PR08MB4423.eurprd08.prod.outlook.com"
    url = "https://shop.example/u/WzEyLCJlbWFpbCJd." + "Zk9vYmFyYmF6cXV4" * 5
    async with smtp_peer() as peer, sender_for(peer) as smtp:
        await smtp.send(
            email(in_reply_to=outlook, references=("sastre.1@tienda.example",), unsubscribe_url=url)
        )
    raw = peer.received[0].raw
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"=?" not in head
    assert f"In-Reply-To: <{outlook}>\r\n".encode() in head
    assert f"References: <sastre.1@tienda.example>\r\n <{outlook}>\r\n".encode() in head
    assert f"List-Unsubscribe: <{url}>,\r\n <mailto:".encode() in head
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))


async def test_one_connection_carries_many_messages() -> None:
    async with smtp_peer() as peer, sender_for(peer, connections=1) as smtp:
        for n in range(5):
            await smtp.send(email(reference=str(n)))
    assert len(peer.received) == 5
    assert peer.connections == 1


async def test_a_5xx_recipient_refusal_is_permanent_with_its_code() -> None:
    async with smtp_peer() as peer, sender_for(peer) as smtp:
        peer.rcpt_answers.append("550 5.1.1 <lucia.moreno@example.org>: user unknown")
        with pytest.raises(DeliveryFailed) as failed:
            await smtp.send(email())
        await smtp.send(email())  # the connection is still good after RSET
    assert not failed.value.retryable
    assert failed.value.code == "5.1.1"  # the enhanced status, not 550
    assert "user unknown" in failed.value.reason
    assert len(peer.received) == 1


async def test_a_4xx_is_retryable() -> None:
    async with smtp_peer() as peer, sender_for(peer) as smtp:
        peer.data_answers.append("451 4.3.0 try again later")
        with pytest.raises(DeliveryFailed) as failed:
            await smtp.send(email())
    assert failed.value.retryable
    assert failed.value.code == "4.3.0"


async def test_a_mailbox_that_needs_smtputf8_fails_for_good_where_the_server_has_none() -> None:
    """Not a connection failure to try again: the server will never take that address. The
    connection stays good for the next message."""
    async with smtp_peer(smtputf8=False) as peer, sender_for(peer) as smtp:
        with pytest.raises(DeliveryFailed) as failed:
            await smtp.send(email(address="josé@ejemplo.es"))
        await smtp.send(email())
    assert not failed.value.retryable
    assert failed.value.code == SMTPUTF8_MISSING
    assert len(peer.received) == 1
    assert peer.connections == 1


async def test_a_5xx_to_data_is_permanent() -> None:
    async with smtp_peer() as peer, sender_for(peer) as smtp:
        peer.data_answers.append("554 5.7.1 rejected as spam")
        with pytest.raises(DeliveryFailed) as failed:
            await smtp.send(email())
    assert not failed.value.retryable
    assert failed.value.code == "5.7.1"


async def test_a_refused_connection_is_retryable() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connections are refused
        smtp = SmtpEmail(host="127.0.0.1", port=port, sender=SENDER, tls="none", timeout=5)
        with pytest.raises(DeliveryFailed) as failed:
            await smtp.send(email())
        await smtp.close()
    assert failed.value.retryable
    assert isinstance(failed.value.__cause__, Exception)


async def test_a_dropped_connection_is_replaced() -> None:
    async with smtp_peer() as peer, sender_for(peer, connections=1) as smtp:
        await smtp.send(email(reference="1"))
        peer.data_answers.append("421 4.3.2 shutting down")
        with pytest.raises(DeliveryFailed) as failed:
            await smtp.send(email(reference="2"))
        await smtp.send(email(reference="3"))
    assert failed.value.retryable
    assert [r.message["Message-ID"] for r in peer.received] == [
        "<sastre.1@tienda.example>",
        "<sastre.3@tienda.example>",
    ]
    assert peer.connections == 2


async def test_a_server_that_stops_answering_is_retryable_and_its_connection_replaced() -> None:
    async with smtp_peer() as peer, sender_for(peer, connections=1, timeout=0.3) as smtp:
        stall = peer.stall = asyncio.Event()  # DATA is not answered
        with pytest.raises(DeliveryFailed) as failed:
            await smtp.send(email(reference="1"))
        peer.stall = None
        stall.set()  # the abandoned conversation's handler ends
        await smtp.send(email(reference="2"))
    assert failed.value.retryable
    assert "did not answer within 0.3 s" in failed.value.reason
    # The stalled one may have reached the server after all (hence retryable, not failed).
    assert "<sastre.2@tienda.example>" in [r.message["Message-ID"] for r in peer.received]
    assert peer.connections == 2


def test_a_wrong_tls_mode_or_sender_is_refused() -> None:
    with pytest.raises(ValueError, match="tls"):
        SmtpEmail(host="h", port=25, sender=SENDER, tls="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an e-mail address"):
        SmtpEmail(host="h", port=25, sender="Tienda")


def test_headers_parsed_once_are_each_messages_own() -> None:
    def built(to: str, subject: str, sender: str) -> EmailMessage:
        return build_message(
            email(address=to, subject=subject),
            sender=sender,
            domain="tienda.example",
            default_subject="Tienda",
        )

    first = built("ana@example.org", "Uno", "Tienda <hola@tienda.example>")
    second = built("luis@example.org", "Dos", "Otra <info@otra.example>")
    again = built("ana@example.org", "Uno", "Tienda <hola@tienda.example>")
    assert [(m["From"], m["To"], m["Subject"]) for m in (first, second, again)] == [
        ("Tienda <hola@tienda.example>", "ana@example.org", "Uno"),
        ("Otra <info@otra.example>", "luis@example.org", "Dos"),
        ("Tienda <hola@tienda.example>", "ana@example.org", "Uno"),
    ]
    assert second["From"].addresses[0].domain == "otra.example"


def _written(message: EmailMessage) -> list[bytes]:
    """The message as it goes on the wire, header by header (aiosmtplib's own flattening)."""
    return flatten_message(message).split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_a_header_made_once_is_written_the_same_in_every_message_as_afresh() -> None:
    subject = "Su pedido nº 1234 — confirmación del envío, con seguimiento y factura adjunta " * 2
    first = build_message(
        email(subject=subject, reference="r-1"),
        sender=SENDER,
        domain="t.example",
        default_subject="",
    )
    second = build_message(
        email(subject=subject, reference="r-2"),
        sender=SENDER,
        domain="t.example",
        default_subject="",
    )
    afresh = EmailMessage()
    afresh["Subject"] = subject
    folded = _written(afresh)
    for message in (first, second):
        lines = _written(message)
        start = next(i for i, line in enumerate(lines) if line.startswith(b"Subject:"))
        assert lines[start : start + len(folded)] == folded
        assert str(message_from_bytes(flatten_message(message), policy=default)["Subject"]) == (
            subject
        )


async def test_the_unsubscribe_mailto_is_the_bare_address_of_a_named_one() -> None:
    url = "https://sastre.example.com/u/abc.def"
    async with smtp_peer() as peer, sender_for(peer, unsubscribe_mailto=SENDER) as smtp:
        await smtp.send(email(unsubscribe_url=url))
    assert peer.received[0].message["List-Unsubscribe"] == (
        f"<{url}>, <mailto:hola@tienda.example?subject=unsubscribe>"
    )


async def test_a_message_that_cannot_be_built_fails_for_good() -> None:
    async with smtp_peer() as peer, sender_for(peer) as smtp:
        with pytest.raises(DeliveryFailed) as failed:
            await smtp.send(email(subject="Re: hours\r\nBcc: victim@evil.example"))
    assert not failed.value.retryable
    assert failed.value.code == "unbuildable"
    assert peer.received == []


async def test_starttls_encrypts_checks_the_certificate_and_then_logs_in() -> None:
    async with (
        smtp_peer(tls="starttls") as peer,
        sender_for(
            peer, tls="starttls", ca_file=TLS_CA, username="tienda", password="s3creto"
        ) as smtp,
    ):
        await smtp.send(email())
    (received,) = peer.received
    assert received.encrypted
    assert peer.logins == [("tienda", "s3creto")]  # sent once the connection was encrypted


async def test_ssl_is_tls_from_the_first_byte() -> None:
    async with smtp_peer(tls="ssl") as peer, sender_for(peer, tls="ssl", ca_file=TLS_CA) as smtp:
        await smtp.send(email())
    (received,) = peer.received
    assert received.encrypted


async def test_a_certificate_no_trusted_authority_issued_is_refused() -> None:
    # The system's authorities, not the tests' own CA: the peer's certificate proves nothing.
    async with smtp_peer(tls="starttls") as peer, sender_for(peer, tls="starttls") as smtp:
        with pytest.raises(DeliveryFailed, match="certificate") as refused:
            await smtp.send(email())
    assert refused.value.retryable  # fixed on the server's side or in the settings, then sent
    assert peer.received == []


async def test_starttls_never_falls_back_to_plain_text() -> None:
    # A server (or someone in the middle) that does not offer STARTTLS gets nothing.
    async with smtp_peer() as peer, sender_for(peer, tls="starttls", ca_file=TLS_CA) as smtp:
        with pytest.raises(DeliveryFailed, match="STARTTLS"):
            await smtp.send(email())
    assert peer.received == []


def test_a_message_id_made_with_a_key_is_sealed() -> None:
    """The same for every send of one message; not to be guessed from its number, so a forged
    delivery report cannot name our messages in turn."""
    sealed = message_id_for("sastre-42", "tienda.example", b"key")
    assert sealed == message_id_for("sastre-42", "tienda.example", b"key")
    assert re.fullmatch(r"sastre\.sastre-42\.[0-9a-f]{16}@tienda\.example", sealed)
    assert sealed != message_id_for("sastre-42", "tienda.example", b"another key")
    assert message_id_for("sastre-42", "tienda.example", None) == "sastre.sastre-42@tienda.example"


async def test_a_sender_given_a_key_sends_sealed_message_ids() -> None:
    async with smtp_peer() as peer, sender_for(peer, id_key=b"key") as smtp:
        provider_id = await smtp.send(email())
    assert provider_id == message_id_for("42", "tienda.example", b"key")
    assert peer.received[0].message["Message-ID"] == f"<{provider_id}>"
