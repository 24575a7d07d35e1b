"""A trailing name-and-contact block with no sign-off is left out of what the bot reads, in
Spanish and English; what the customer wrote is never cut."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from channels.email.parse import parse_email
from channels.email.signature import strip_signature

FIXTURES = Path(__file__).parent / "fixtures" / "email"


def test_an_outlook_signature_and_thread_are_left_out_of_the_reply() -> None:
    parsed = parse_email((FIXTURES / "outlook_signature_es.eml").read_bytes())
    assert parsed.reply == "¿A qué hora abren el sábado?"
    assert "Tel. 600 000 000" in parsed.text  # the whole body is kept


def test_an_english_contact_block_without_the_senders_name() -> None:
    text = (
        "Could you tell me when my order ships?\n\n"
        "Jane Doe\nHead of Purchasing | Doe & Co\nMobile: +44 7700 900123\nwww.doe.example"
    )
    assert strip_signature(text) == "Could you tell me when my order ships?"


def test_a_name_alone_is_a_signature_only_when_it_is_the_senders() -> None:
    text = "Where is my parcel?\n\nJane"
    assert strip_signature(text, "Jane Doe") == "Where is my parcel?"
    assert strip_signature(text, "Someone Else") == text
    assert strip_signature(text) == text


def test_a_name_paragraph_then_a_contact_paragraph_both_go() -> None:
    text = "¿Tienen la talla M?\n\nAna García\n\nDirectora | Tienda Sol\nTel. 600 111 222"
    assert strip_signature(text, "Ana García") == "¿Tienen la talla M?"


def test_what_the_customer_wrote_is_not_cut() -> None:
    kept = [
        "Quiero cambiar mi número.\n\nMi teléfono es 600 000 000",
        "Envíenlo a esta dirección:\n\nCalle Mayor 5\n28013 Madrid",
        "Thanks\n\nOrder SO-123456",
        "Hi\n\nJane Doe\nCan you call me on 600 000 000?",
        "Hola\n\nPedro Pérez\nQuiero devolver la camisa azul que compré la semana pasada y otra",
        "Jane Doe\nTel. 600 000 000",  # nothing above it: the bot must read something
        "Saludos\n\nBuenos Días\nLunes y martes no puedo, el 600 000 000 no funciona",
    ]
    for text in kept:
        assert strip_signature(text, "Jane Doe") == text, text


@given(st.text(max_size=200), st.one_of(st.none(), st.text(max_size=20)))
def test_the_result_is_a_non_empty_start_of_the_text(text: str, name: str | None) -> None:
    stripped = strip_signature(text, name)
    assert text.startswith(stripped)
    if text.strip():
        assert stripped.strip()
