"""The message catalogue: complete in every language, the same placeholders, one fallback rule."""

from __future__ import annotations

import shutil
import string
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from wording import catalogue
from wording.catalogue import (
    FALLBACK_LANGUAGE,
    UnknownMessage,
    available_languages,
    message_ids,
    pick_language,
    translate,
)


def messages(language: str) -> dict[str, str]:
    path = catalogue.LOCALE_DIR / language / "LC_MESSAGES" / f"{catalogue.DOMAIN}.po"
    with path.open("rb") as po:
        return {str(m.id): str(m.string) for m in read_po(po) if m.id}


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_spanish_and_english_are_there() -> None:
    assert {"es", "en"} <= available_languages()


@pytest.mark.parametrize("language", sorted(available_languages()))
def test_every_message_is_in_every_language_with_the_same_placeholders(language: str) -> None:
    english, translated = messages(FALLBACK_LANGUAGE), messages(language)
    assert set(translated) == set(english)
    for msgid, text in translated.items():
        assert text.strip(), f"{language}: {msgid} is empty"
        assert fields(text) == fields(english[msgid]), f"{language}: {msgid}"
        assert "default" not in fields(text)  # translate() keeps that name for itself


def test_every_message_the_code_uses_is_in_the_catalogue() -> None:
    """What `pybabel extract` finds in the code and the customer pages' templates (babel.cfg) is
    what the catalogue holds."""
    from babel.messages.frontend import CommandLineInterface

    root = Path(__file__).resolve().parents[2]
    template = Path(__file__).parent / "extracted.pot"
    try:
        CommandLineInterface().run(  # type: ignore[no-untyped-call]
            ["pybabel", "-q", "extract", "-F", str(root / "babel.cfg"), "-o", str(template)]
            + [
                str(root / package)
                for package in ("actions", "consent", "dialog", "sastre", "wording")
            ]
        )
        with template.open("rb") as pot:
            used = {str(m.id) for m in read_po(pot) if m.id}
    finally:
        template.unlink(missing_ok=True)
    assert used <= message_ids()
    assert message_ids() <= used  # no message left behind by the code


def test_the_fallback_rule() -> None:
    assert translate("es", "channel.email") == "correo"
    assert translate("es-ES", "channel.email") == "correo"
    assert translate("xx", "channel.email") == "e-mail"  # unknown, no default: English
    assert translate("xx", "channel.email", default="es") == "correo"  # the default language
    assert translate(None, "channel.email", default="xx") == "e-mail"
    assert pick_language(None, "fr", "es") == "es"


def test_placeholders_are_filled() -> None:
    assert translate("en", "callback.done", when="on Monday 2 at 10:00") == (
        "We'll call you on Monday 2 at 10:00."
    )


def test_an_unknown_message_is_an_error_not_a_key_shown_to_a_customer() -> None:
    with pytest.raises(UnknownMessage):
        translate("en", "no.such.message")


def test_a_third_language_is_just_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locale = tmp_path / "locale"
    shutil.copytree(catalogue.LOCALE_DIR, locale)
    french = locale / "fr" / "LC_MESSAGES"
    french.mkdir(parents=True)
    (french / "messages.po").write_text(
        'msgid ""\nmsgstr ""\n"Language: fr\\n"\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
        'msgid "channel.email"\nmsgstr "courriel"\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(catalogue, "LOCALE_DIR", locale)
    for cached in (catalogue.available_languages, catalogue._compiled, catalogue.translations):
        cached.cache_clear()
    try:
        assert translate("fr", "channel.email") == "courriel"
        assert translate("fr", "channel.sms", default="es") == "SMS"  # missing: falls back
        assert translate("fr", "channel.webchat", default="es") == "el chat web"
    finally:
        monkeypatch.undo()
        for cached in (catalogue.available_languages, catalogue._compiled, catalogue.translations):
            cached.cache_clear()
