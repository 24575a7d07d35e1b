"""One way to read a customer's words whatever their case and accents: "¿Cuándo ABRÍS?" and
"cuando abris" are the same question, "SÍ" is "si", full-width "ＳＴＯＰ" is "stop"."""

from __future__ import annotations

import unicodedata

__all__ = ["fold"]


def fold(text: str) -> str:
    """Case-folded, compatibility-decomposed text without combining marks.

    NFKD runs twice: once so compatibility characters ("ＳＴＯＰ", "ℌ") become letters that can be
    case-folded, and once after `casefold`, which may itself add marks ("İ" is "i" and a dot
    above). Punctuation and spacing are left alone: each reader (the intent model, the FAQ, the
    keywords) splits words its own way. ASCII, most messages, takes the fast path.
    """
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))
