"""The sentences customers read, from gettext catalogues (`locale/<language>/LC_MESSAGES/
messages.po`), managed with Babel's `pybabel extract/update/compile` (see babel.cfg).

Message ids are stable keys ("handoff.notice", "keyword.stop"), not English sentences: the
English wording is copy that compliance and marketing edit, and editing it in `en.po` must not
change the code or orphan every other language's translation of it. Placeholders are
`str.format` fields ("{brand}"), the same names in every language (a test checks).

One fallback rule for every message: the language asked for if it has a catalogue, else the
deployment's default language (when the caller knows it), else English. A message missing from
a catalogue falls back the same way, message by message (gettext's fallback chain). A third
language is one more `.po` file; nothing in the code lists the languages.

The `.po` files are read at run time (Babel compiles them in memory on first use): a fresh
clone needs no build step. `pybabel compile` is only a check for translators.
"""

from __future__ import annotations

from functools import cache, lru_cache
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from babel.support import NullTranslations

# Babel is imported where a catalogue is read, not here: settings validation asks only which
# languages exist (`available_languages`), at the start of every command.

__all__ = [
    "DOMAIN",
    "FALLBACK_LANGUAGE",
    "LOCALE_DIR",
    "N_",
    "UnknownMessage",
    "available_languages",
    "message_ids",
    "pick_language",
    "translate",
    "translations",
]

DOMAIN = "messages"
LOCALE_DIR = Path(__file__).parent / "locale"
FALLBACK_LANGUAGE = "en"  # the catalogue every message must be in


class UnknownMessage(LookupError):
    """A message id no catalogue has: a typo in the code, caught by the tests."""


def N_(msgid: str) -> str:  # gettext's conventional name, which pybabel extracts by default
    """Mark a message id chosen at run time (a status, a channel) for `pybabel extract`."""
    return msgid


def _po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def available_languages() -> frozenset[str]:
    """The languages with a catalogue."""
    return frozenset(p.parent.parent.name for p in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def pick_language(*candidates: str | None) -> str:
    """The first candidate with a catalogue ("es-ES" counts as "es"), else English."""
    languages = available_languages()
    for candidate in candidates:
        if not candidate:
            continue
        code = candidate.replace("_", "-").split("-", 1)[0].lower()
        if code in languages:
            return code
    return FALLBACK_LANGUAGE


@cache
def _compiled(language: str) -> bytes:
    """One language's `.po` file, compiled in memory to gettext's binary form."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with _po_path(language).open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    mo = BytesIO()
    write_mo(mo, catalog)
    return mo.getvalue()


@cache
def message_ids() -> frozenset[str]:
    """Every message id: the English catalogue is the complete one."""
    from babel.messages.pofile import read_po

    with _po_path(FALLBACK_LANGUAGE).open("rb") as po:
        catalog = read_po(po, locale=FALLBACK_LANGUAGE, domain=DOMAIN)
    return frozenset(str(m.id) for m in catalog if m.id and m.string)


@lru_cache(maxsize=64)  # language x default pairs: a handful in practice
def translations(language: str | None, default: str | None = None) -> NullTranslations:
    """The catalogue for `language` with the fallback chain: the default language, English.

    A `babel.support.Translations` (gettext's API), so templates can use it too. Each chain is
    built from its own objects: gettext chains fallbacks by changing the catalogue itself."""
    from babel.support import Translations

    chain = dict.fromkeys(
        (pick_language(language, default), pick_language(default), FALLBACK_LANGUAGE)
    )
    first, *rest = (Translations(BytesIO(_compiled(code)), domain=DOMAIN) for code in chain)
    for catalogue in rest:
        first.add_fallback(catalogue)
    return first


def translate(
    language: str | None, msgid: str, /, *, default: str | None = None, **params: object
) -> str:
    """The message in the customer's language (see the fallback rule), its fields filled in.

    Raises UnknownMessage for an id that is in no catalogue, rather than showing the customer
    a key."""
    if msgid not in message_ids():
        raise UnknownMessage(msgid)
    text = translations(language, default).gettext(msgid)
    return text.format(**params)
