"""Raw e-mail in the shapes mail clients and servers write, one fixture per condition."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.email.parse import (
    MAX_REFERENCES,
    REPLY_SCAN,
    html_to_text,
    latest_reply,
    message_ids,
    parse_email,
)

FIXTURES = Path(__file__).parent / "fixtures" / "email"


def raw(name: str) -> bytes:
    return (FIXTURES / f"{name}.eml").read_bytes()


def test_plain_text_with_encoded_headers() -> None:
    parsed = parse_email(raw("plain"))
    assert parsed.sender == "lucia.moreno@example.org"
    assert parsed.sender_name == "Lucía Moreno"
    assert parsed.subject == "Pregunta sobre mi pedido"
    assert parsed.message_id == "CAF3n9xQp8+plain@mail.example.org"
    assert parsed.dedupe_key == parsed.message_id
    assert "¿dónde está mi pedido SO-123456?" in parsed.text
    assert not parsed.malformed
    assert parsed.auto is None


def test_multipart_alternative_reads_the_plain_part() -> None:
    parsed = parse_email(raw("alternative"))
    assert parsed.text == "What are your opening hours on Saturday?\n"
    assert not parsed.from_html
    assert parsed.attachments == ()  # the HTML twin is not an attachment


def test_html_only_is_turned_into_text_without_markup_or_scripts() -> None:
    parsed = parse_email(raw("html_only"))
    assert parsed.from_html
    assert "Quiero cambiar la camisa del pedido SO-654321 por una talla M." in parsed.text
    assert "Artículo" in parsed.text
    assert "L → M" in parsed.text
    assert "<" not in parsed.text
    assert "alert" not in parsed.text
    assert "margin" not in parsed.text


def test_base64_body() -> None:
    parsed = parse_email(raw("base64"))
    assert parsed.text == "¿Podéis enviarme la factura del pedido SO-111222? Muchas gracias.\n"


def test_quoted_printable_body_and_soft_line_breaks() -> None:
    parsed = parse_email(raw("quoted_printable"))
    assert parsed.subject == "Devolución"
    assert parsed.sender_name == "José Luis"
    assert "me quedan pequeñas y la suela está despegada. ¿Cómo lo hago?" in parsed.text


def test_iso_8859_1() -> None:
    parsed = parse_email(raw("latin1"))
    assert parsed.sender_name == "Ana Muñoz"
    assert parsed.subject == "Información"
    assert "¿Tenéis la chaqueta de paño en talla pequeña?" in parsed.text


def test_windows_1252() -> None:
    parsed = parse_email(raw("windows1252"))
    assert parsed.text.startswith("El abrigo cuesta 120 € en la web")
    assert "“110 €”" in parsed.text
    assert parsed.text.rstrip().endswith("…")


@pytest.mark.parametrize(
    "label", ["iso-8859-1", "ISO_8859-1", "iso8859-1", "latin1", "cp819", "us-ascii"]
)
def test_windows_1252_bytes_labelled_iso_8859_1_read_as_windows_1252(label: str) -> None:
    # Outlook and others label Windows-1252 text ISO-8859-1 (in any of its spellings); read
    # strictly, € and the curly quotes would become invisible control characters.
    mislabelled = raw("windows1252").replace(
        b'charset="Windows-1252"', f'charset="{label}"'.encode()
    )
    parsed = parse_email(mislabelled)
    assert "120 €" in parsed.text
    assert "“110 €”" in parsed.text


def test_gbk_text_labelled_gb2312_is_read_whole() -> None:
    """GB2312 labels GBK text as ISO-8859-1 labels Windows-1252: read as its superset."""
    text = "您好，我的订单在哪里？顺颂商祺 碁"  # the last character is GBK's, not GB2312's
    message = (
        b"From: a@example.com\nMessage-ID: <gb@example.com>\n"
        b'Content-Type: text/plain; charset="gb2312"\n\n' + text.encode("gbk")
    )
    parsed = parse_email(message)
    assert parsed.text == text
    assert not parsed.malformed


def test_an_unknown_charset_is_a_defect_not_an_error() -> None:
    parsed = parse_email(raw("plain").replace(b'charset="UTF-8"', b'charset="x-klingon"'))
    assert "¿dónde está" in parsed.text
    assert any("charset" in defect for defect in parsed.defects)


def test_missing_headers_dedupe_by_a_hash_of_the_raw_message() -> None:
    data = raw("missing_headers")
    parsed = parse_email(data)
    assert parsed.message_id is None
    assert parsed.subject is None
    assert parsed.date is None
    assert parsed.dedupe_key.startswith("sha256:")
    assert parsed.dedupe_key == parse_email(data).dedupe_key
    assert parsed.dedupe_key != parse_email(data + b"again\n").dedupe_key
    assert parsed.thread_key == parsed.dedupe_key
    assert "no Message-ID" in parsed.defects
    assert parsed.text == "hello? is anybody there\n"


def test_broken_mime_is_kept_and_flagged() -> None:
    parsed = parse_email(raw("broken_mime"))
    assert parsed.malformed
    assert "CloseBoundaryNotFoundDefect" in parsed.defects
    assert parsed.text == "Os mando la foto del desperfecto.\n"
    assert [a.name for a in parsed.attachments] == ["foto.jpg"]


def test_attachments_are_metadata_and_their_bytes_only_when_kept() -> None:
    parsed = parse_email(raw("attachment"))
    (attachment,) = parsed.attachments
    assert attachment.name == "ticket nº 42.pdf"
    assert attachment.content_type == "application/pdf"
    assert attachment.size == 82
    assert attachment.content is None
    kept = parse_email(raw("attachment"), keep_attachments=True).attachments[0]
    assert kept.content is not None
    assert kept.content.startswith(b"%PDF-1.4")
    assert parsed.text == "Adjunto el ticket de la compra para la devolución.\n"


def test_a_forwarded_message_and_named_text_files_are_attachments() -> None:
    parsed = parse_email(raw("forwarded_eml"), keep_attachments=True)
    assert [(a.name, a.content_type) for a in parsed.attachments] == [
        ("pedido.eml", "message/rfc822"),
        ("tallas.csv", "text/csv"),
        ("notas.txt", "text/plain"),
    ]
    forwarded = parsed.attachments[0].content
    assert forwarded is not None
    assert b"Message-ID: <sastre.out.0042@tienda.example>" in forwarded
    assert parsed.text.strip() == "Os reenvío el correo del pedido, y la lista de tallas."


def test_outlook_reply_in_spanish_reads_only_the_new_words() -> None:
    parsed = parse_email(raw("outlook_reply_es"))
    assert parsed.reply == (
        "Perfecto, entonces lo recojo en la tienda el jueves. ¿Hasta qué hora abrís?"
    )
    assert "De: Tienda" in parsed.text
    assert "Responsable de compras" in parsed.text


def test_outlook_reply_in_english() -> None:
    parsed = parse_email(raw("outlook_reply_en"))
    assert parsed.reply == "Could you deliver it to my office address instead?"
    assert "-----Original Message-----" in parsed.text


def test_gmail_reply_in_english() -> None:
    parsed = parse_email(raw("gmail_reply_en"))
    assert parsed.reply == "Thanks! Can I bring it to the shop instead of posting it?"
    assert "> Hello Jane" in parsed.text


def test_gmail_reply_in_spanish() -> None:
    parsed = parse_email(raw("gmail_reply_es"))
    assert parsed.reply == "¿Podéis llamarme mañana por la tarde en vez de hoy?"


def test_a_reply_delivered_with_smtp_line_endings_reads_the_same() -> None:
    for name in ("gmail_reply_es", "gmail_reply_en", "outlook_reply_es"):
        parsed = parse_email(raw(name).replace(b"\n", b"\r\n"))
        assert parsed.reply == parse_email(raw(name)).reply, name
        assert "\r" not in parsed.text


def test_undeclared_8bit_text_that_is_not_utf8_is_read_as_windows_1252() -> None:
    parsed = parse_email(raw("windows1252_undeclared"))
    assert parsed.text.strip() == "¿Cuándo llega mi pedido? Soy Begoña."
    assert parsed.defects == ()


def test_bytes_the_declared_charset_cannot_read_are_flagged() -> None:
    broken = raw("plain").replace(b"\n\n", b"\n\n\xff\xfe ", 1)  # in its UTF-8 body
    parsed = parse_email(broken)
    assert any("not utf-8" in defect for defect in parsed.defects)


def test_threading_keys() -> None:
    parsed = parse_email(raw("outlook_reply_es"))
    assert parsed.in_reply_to == "sastre.answer.0002@tienda.example"
    assert parsed.references == (
        "sastre.first.0001@tienda.example",
        "sastre.answer.0002@tienda.example",
    )
    assert parsed.thread_key == "sastre.first.0001@tienda.example"  # the thread's root
    reply = parse_email(raw("gmail_reply_en"))
    assert reply.thread_key == "sastre.answer.0100@tienda.example"
    first = parse_email(raw("plain"))
    assert first.thread_key == first.message_id  # a new thread starts at itself


def test_a_long_references_list_keeps_the_root_and_the_nearest() -> None:
    ids = [f"m{n}@mail.example" for n in range(1000)]
    listed = " ".join(f"<{m}>" for m in ids).encode()
    parsed = parse_email(
        raw("gmail_reply_en").replace(b"<sastre.answer.0100@tienda.example>", listed, 1)
    )
    assert parsed.references == (ids[0], *ids[-(MAX_REFERENCES - 1) :])
    assert parsed.thread_key == ids[0]


def test_an_auto_reply_is_flagged() -> None:
    parsed = parse_email(raw("auto_reply"))
    assert parsed.auto == "Auto-Submitted: auto-replied"


def test_bulk_mail_is_flagged() -> None:
    assert parse_email(raw("bulk")).auto == "Precedence: bulk"


def test_each_auto_header_alone_flags_the_message() -> None:
    base = raw("plain")
    for header in (
        b"Auto-Submitted: auto-generated",
        b"Precedence: junk",
        b"Precedence: list",
        b"Precedence: auto_reply",
        b"X-Autoreply: yes",
        b"X-Auto-Response-Suppress: OOF",
        b"List-Id: Offers <offers.shop-deals.example>",
        b"List-Unsubscribe: <mailto:leave@shop-deals.example>",
    ):
        assert parse_email(header + b"\n" + base).auto is not None, header
    assert parse_email(b"Auto-Submitted: no\n" + base).auto is None


def test_a_newsletter_without_precedence_is_flagged_by_its_list_headers() -> None:
    """Newsletters and Mailman 3 lists often write no Precedence: their List-Id says it."""
    newsletter = raw("bulk").replace(b"Precedence: bulk\n", b"")
    assert b"Precedence" not in newsletter
    assert parse_email(newsletter).auto == "List-Id"


def test_a_read_receipt_is_flagged_and_is_no_bounce() -> None:
    parsed = parse_email(raw("read_receipt"))
    assert parsed.auto == "read receipt"
    assert parsed.bounces == ()


def test_any_machine_report_is_flagged() -> None:
    report = raw("read_receipt").replace(b"disposition-notification;", b"x-feedback;")
    assert parse_email(report).auto == "report (x-feedback)"


def test_a_permanent_bounce_names_the_address_and_our_message() -> None:
    parsed = parse_email(raw("bounce_5_1_1"))
    (bounce,) = parsed.bounces
    assert bounce.recipient == "nobody.here@example.com"
    assert bounce.status == "5.1.1"
    assert bounce.permanent
    assert bounce.action == "failed"
    assert bounce.diagnostic is not None
    assert "User unknown" in bounce.diagnostic
    assert parsed.bounced_message_id == "sastre.out.0042@tienda.example"
    assert parsed.auto is not None


def test_a_delay_report_is_transient() -> None:
    parsed = parse_email(raw("delayed_4_4_1"))
    (bounce,) = parsed.bounces
    assert bounce.status == "4.4.1"
    assert not bounce.permanent
    assert bounce.action == "delayed"
    assert parsed.bounced_message_id == "sastre.out.0043@tienda.example"


def test_a_long_message_id_is_hashed_to_fit() -> None:
    long_id = b"<" + b"x" * 300 + b"@example.org>"
    parsed = parse_email(raw("plain").replace(b"<CAF3n9xQp8+plain@mail.example.org>", long_id))
    assert parsed.dedupe_key.startswith("sha256:")
    assert len(parsed.dedupe_key) <= 200


def test_html_to_text_of_nothing() -> None:
    assert html_to_text("   ") == ""


def test_a_reply_that_is_all_quote_keeps_the_text() -> None:
    assert latest_reply("> only a quote\n> nothing else\n") == "> only a quote\n> nothing else"


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=2000))
def test_any_bytes_parse_without_an_exception(data: bytes) -> None:
    parsed = parse_email(data)
    assert parsed.dedupe_key


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=2000))
def test_a_fixture_cut_or_spliced_anywhere_parses(noise: bytes, at: int) -> None:
    for name in ("alternative", "bounce_5_1_1", "attachment"):
        data = raw(name)
        parse_email(data[:at] + noise + data[at:])
        parse_email(data[:at])


def test_raw_utf8_headers_are_read_as_utf8_never_as_surrogates() -> None:
    raw = (
        "From: José Núñez <josé@ejemplo.es>\r\nSubject: ¿Abren el sábado?\r\n"
        "Message-ID: <utf8.1@ejemplo.es>\r\n\r\nhola\r\n"
    ).encode()
    parsed = parse_email(raw)
    assert (parsed.sender, parsed.sender_name) == ("josé@ejemplo.es", "José Núñez")
    assert parsed.subject == "¿Abren el sábado?"
    assert parsed.defects == ()


def test_an_old_clients_8_bit_header_is_read_as_windows_1252() -> None:
    parsed = parse_email(
        "From: Jos\xe9 <jose@ejemplo.es>\r\nSubject: x\r\n\r\nhola\r\n".encode("cp1252")
    )
    assert (parsed.sender, parsed.sender_name) == ("jose@ejemplo.es", "José")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30))
def test_no_header_value_carries_a_surrogate(name: str) -> None:
    raw = f"From: {name} <ana@example.com>\r\nSubject: {name}\r\n\r\nhola\r\n"
    parsed = parse_email(raw.encode("utf-8"))
    for value in (parsed.sender, parsed.sender_name, parsed.subject):
        assert value is None or not any("\udc80" <= c <= "\udcff" for c in value)


def test_html_gmail_reply_in_spanish_drops_the_quoted_thread() -> None:
    # The quote asks the reader to answer "BAJA": the bot must never read it as the customer's.
    parsed = parse_email(raw("gmail_html_es"))
    assert parsed.from_html
    assert parsed.reply == "¿Tienen trajes de lino?"
    assert "escribió" in parsed.text  # the whole body is kept


def test_html_outlook_reply_drops_its_header_block_and_what_follows() -> None:
    parsed = parse_email(raw("outlook_html_es"))
    assert parsed.reply == "¿Cuál es el horario del sábado?"
    assert "STOP" in parsed.text


def test_html_outlook_desktop_reply_drops_the_bordered_header_and_what_follows() -> None:
    assert parse_email(raw("outlook_desktop_html")).reply == "Do you do alterations?"


def test_html_apple_reply_drops_the_cited_blockquote_and_keeps_what_follows() -> None:
    reply = parse_email(raw("apple_html")).reply
    assert "STOP" not in reply
    assert "wrote" not in reply
    assert "When does the shop open?" in reply
    assert "Thanks!" in reply


def test_blank_plain_alternative_falls_back_to_the_html() -> None:
    parsed = parse_email(raw("blank_plain_alternative"))
    assert parsed.from_html
    assert parsed.text == "Do you do alterations?\n"
    assert parsed.reply == "Do you do alterations?"


def test_subject_with_an_encoded_line_break_is_one_line() -> None:
    assert parse_email(raw("subject_crlf")).subject == "hours Bcc: victim@evil.example"


def test_a_huge_html_body_is_read_only_so_far() -> None:
    table = "<table>" + "<tr><td>x</td><td>y</td></tr>" * 120_000 + "</table>"
    message = (
        "From: a@example.com\nMessage-ID: <big@example.com>\n"
        "Content-Type: text/html; charset=utf-8\n\n<p>Do you sell linen?</p>" + table
    )
    parsed = parse_email(message.encode())
    assert parsed.reply.startswith("Do you sell linen?")
    assert len(parsed.text) < 40_000  # the first MAX_HTML_CHARS of the HTML, not 3.5 MB of it
    assert "<" not in parsed.text  # cut before a tag, never inside one
    assert any("HTML body of" in defect for defect in parsed.defects)


def test_a_spanish_header_line_without_quote_marks_starts_the_thread() -> None:
    text = (
        "¿Tienen trajes de lino?\n\nEl dom, 6 dic 2026 a las 3:00, Tienda <hola@tienda.example>\n"
        "escribió:\nSi no desea recibir más mensajes responda BAJA.\n"
    )
    assert latest_reply(text) == "¿Tienen trajes de lino?"


def test_outlooks_original_message_line_starts_the_thread_in_either_language() -> None:
    for line in ("-----Mensaje original-----", "-----Original Message-----"):
        text = f"Quiero cambiar la talla.\n\n{line}\nDe: Tienda <hola@tienda.example>\n\nHola.\n"
        assert latest_reply(text) == "Quiero cambiar la talla.", line


@pytest.mark.parametrize(
    ("reply", "header"),
    [
        (
            "¿Podéis llamarme mañana por la tarde?",
            "El mar, 4 mar 2025 a las 18:30, Atención al cliente de Tienda"
            " (<hola@tienda.example>)\nescribió:",
        ),
        (
            "Can I bring it to the shop instead?",
            "On Tue, 4 Mar 2025 at 14:02, Tienda Customer Service Team"
            " <support@tienda.example>\nwrote:",
        ),
    ],
)
def test_a_header_line_wrapped_onto_two_lines_goes_with_the_quote(reply: str, header: str) -> None:
    """A long sender's name makes Gmail wrap "On ... wrote:"; its first half was read as the
    customer's (the address's ">" kept it out of the header)."""
    assert latest_reply(f"{reply}\n\n{header}\n\n> Hello, your return is registered.\n>\n") == reply


def test_the_line_just_above_a_one_line_header_is_the_customers() -> None:
    for header in (
        "On Tue, 4 Mar 2025, Tienda <s@tienda.example> wrote:",
        "On Tue, Tienda wrote:",
        "Tienda Online wrote:",  # a word or three, as a wrapped header's second half is
    ):
        reply = "Hi\nPlease cancel my order 1234"
        assert latest_reply(f"{reply}\n{header}\n> Your order shipped\n") == reply, header


def test_a_customers_own_line_ending_in_a_colon_above_a_quote_is_kept() -> None:
    """Only a line that introduces the quote as clients write it ("... wrote:", "... escribió:",
    or one with an address) goes with it: any line ending in a colon used to."""
    for reply, quote in (
        ("Hi\nThis is what you sent me:", "> Your order shipped"),
        ("Hola\nMira lo que me mandasteis:", "> Su pedido ha sido enviado"),
    ):
        assert latest_reply(f"{reply}\n{quote}\n") == reply, reply


@pytest.mark.parametrize(
    "header",
    [
        "On 12/7/26 10:00 AM, Tienda wrote:",  # Thunderbird: no address
        "El 7/12/26 a las 10:00, Tienda escribió:",
        "Le 7 déc. 2026 à 10:00, Tienda <hola@tienda.example> a écrit :",
    ],
)
def test_a_header_line_without_an_address_or_in_french_goes_with_the_quote(header: str) -> None:
    assert latest_reply(f"Please cancel it\n{header}\n\n> Your order shipped\n>\n") == (
        "Please cancel it"
    )


def test_html_with_an_unmarked_spanish_quote_is_cut_at_its_header_line() -> None:
    html = (
        "<div><div>¿Tienen trajes de lino?</div><div><br></div><div>El dom, 6 dic 2026 a las "
        "3:00, Tienda &lt;hola@tienda.example&gt; escribió:</div>"
        '<div style="margin-left:2em">Si no desea recibir más mensajes responda BAJA.</div></div>'
    )
    message = "From: a@example.com\nContent-Type: text/html; charset=utf-8\n\n" + html
    assert parse_email(message.encode()).reply == "¿Tienen trajes de lino?"


def test_a_message_id_outside_a_dot_atom_is_read_whole() -> None:
    """CRM and ticketing systems write ids such as `<ticket:1001@crm.example>`; read through
    the stdlib's Message-ID parser it was `<ticket`, one dedupe key for every ticket."""
    parsed = parse_email(raw("message_id_with_colon"))
    assert parsed.message_id == "ticket:1001@crm.example"
    assert parsed.dedupe_key == "ticket:1001@crm.example"
    assert parsed.in_reply_to == "ticket:1000@crm.example"
    assert parsed.references == ("ticket:999@crm.example", "ticket:1000@crm.example")


def test_an_xhtml_body_with_an_xml_declaration_is_read() -> None:
    parsed = parse_email(raw("xhtml_declaration"))
    assert parsed.sender == "ana@example.com"
    assert parsed.text == "Quiero devolver el pedido SO-123456.\n"
    assert not parsed.malformed


def test_a_charset_no_codec_decodes_costs_the_body_not_the_sender() -> None:
    """`charset=undefined` names a codec that refuses everything: the body is read with
    replacements and flagged, and the sender and threading stay."""
    parsed = parse_email(raw("undefined_charset"))
    assert parsed.sender == "ana@example.com"
    assert parsed.message_id == "undefined-charset@mail.example.com"
    assert "pedido SO-123456?" in parsed.text
    assert parsed.defects == ("bytes that are not undefined: replaced",)


def test_the_words_after_an_inline_picture_are_read_too() -> None:
    """Apple Mail writes text, picture, text as multipart/mixed: the question may be after
    the picture."""
    parsed = parse_email(raw("apple_inline_image"))
    assert parsed.text == (
        "Hola, os mando la foto del desperfecto:\n\n"
        "Quiero devolver el pedido SO-123456, ¿cómo lo hago?\n"
    )
    assert "SO-123456" in parsed.reply
    assert [(a.name, a.content_type) for a in parsed.attachments] == [
        ("IMG_0001.jpg", "image/jpeg")
    ]


def test_a_message_id_with_a_line_separator_is_no_id() -> None:
    """Kept, it would go in our answer's In-Reply-To, which no mail library can write."""
    for odd in ("<a\x0bb@example.org>", "a\u2028b@example.org", "<a\x1cb@example.org>"):
        message = raw("plain").replace(b"<CAF3n9xQp8+plain@mail.example.org>", odd.encode())
        parsed = parse_email(message)
        assert parsed.message_id is None, odd
        assert parsed.dedupe_key.startswith("sha256:")


def test_a_body_nested_too_deep_to_parse_still_has_its_sender_and_headers() -> None:
    """A thousand multiparts in one another exhaust the stdlib parser's recursion: the headers
    alone still say who wrote (an attacker's shape; the mail is stored and flagged)."""
    head = (
        b"From: Ana Ruiz <ana.ruiz@example.org>\r\nSubject: fotos\r\n"
        b"Message-ID: <deep.1@example.org>\r\nAuto-Submitted: auto-replied\r\n"
        b"MIME-Version: 1.0\r\n"
    )
    depth = 1200
    body = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    )
    body += b"Content-Type: text/plain\r\n\r\nHola.\r\n"
    body += b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth)))
    parsed = parse_email(head + body)
    assert parsed.defects[0].startswith("unreadable: RecursionError")
    assert (parsed.sender, parsed.sender_name) == ("ana.ruiz@example.org", "Ana Ruiz")
    assert (parsed.subject, parsed.message_id) == ("fotos", "deep.1@example.org")
    assert parsed.dedupe_key == "deep.1@example.org"
    assert parsed.auto == "Auto-Submitted: auto-replied"


def test_an_id_with_a_control_character_is_no_id() -> None:
    """A NUL in an id reached the threading query and a bounce's look-up, and failed there; a
    byte no charset decodes (kept by the stdlib as a lone surrogate) is U+FFFD."""
    assert message_ids("<a\x00b@x.example> <ok@x.example> <c\udc80@x.example>") == (
        "ok@x.example",
        "c\ufffd@x.example",
    )


def test_a_from_name_the_stdlib_cannot_decode_still_names_the_sender() -> None:
    """A name in UTF-7 decoding to half a UTF-16 pair: the stdlib cannot make a header of it,
    and the message was filed as from nobody."""
    parsed = parse_email(
        b"From: =?utf-7?q?+2AA-?= <ana@example.org>\r\nMessage-ID: <s4@example.org>\r\n\r\nhola\r\n"
    )
    assert parsed.sender == "ana@example.org"
    assert "no From address" not in parsed.defects


def test_the_reply_is_looked_for_in_the_texts_start() -> None:
    """The finders' work grows faster than the text; the bot reads only the start anyway."""
    text = "Where is my order SO-123456?\n\n" + "lorem ipsum\n" * REPLY_SCAN + "> quoted\n"
    reply = latest_reply(text)
    assert reply.startswith("Where is my order SO-123456?")
    assert len(reply) <= REPLY_SCAN


def test_a_run_of_blank_lines_reads_as_one() -> None:
    """mail-parser-reply's time grows with the square of a run of blank lines (16,000 took 15 s)."""
    assert latest_reply("hola\n\n \n\t\n\n¿abrís el domingo?") == "hola\n\n¿abrís el domingo?"


def test_an_8_bit_subject_is_read_as_windows_1252_as_the_sender_is() -> None:
    """The stdlib's header object put U+FFFD for the byte it could not read as UTF-8, and the
    answer went out as "Re: Informaci\ufffdn"."""
    parsed = parse_email(
        b"From: Jos\xe9 <jose@example.org>\r\nSubject: Informaci\xf3n del pedido\r\n"
        b"Message-ID: <latin.1@example.org>\r\n\r\nhola\r\n"
    )
    assert parsed.subject == "Información del pedido"
    assert parsed.sender_name == "José"
