"""A trailing contact block without a sign-off, as Outlook and company templates write it:

    ¿A qué hora abren el sábado?

    Camila Flores
    Directora de compras | Flores S.L.
    Tel. 600 000 000

mail-parser-reply removes signatures that announce themselves ("-- ", "Saludos,", "Best regards",
"Enviado desde mi iPhone"); a block that is only a name and contact lines has nothing of the
kind, and the bot would read it as part of the question. These rules are deliberately narrow,
because cutting what the customer wrote is worse than leaving a signature in:

* only the last paragraph (after a blank line) is a candidate, or the last two when the first
  of them is a single line (a name, then a title-and-phone block), and only when something is
  left above it;
* it has at most six lines, each short, none a question;
* it opens with the sender's own name (their From display name, whole or first name), or it
  opens with a line that looks like a name (one to four capitalised words, no digits) and holds
  a line that is only contact details: a labelled or bare phone number, an address, a web site.

"Mi teléfono es 600 000 000" is a sentence, not a contact line, and stays.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["strip_signature"]

MAX_LINES: Final = 6
MAX_LINE: Final = 80

_PARAGRAPH_BREAK: Final = re.compile(r"\n[ \t]*\n")
_PHONE: Final = re.compile(
    r"(?:(?:tel[eé]fono|tel|tlf|tfno|m[oó]vil|movil|cel(?:ular|l)?|phone|mobile|mob|fax|"
    r"direct|office|oficina|[tmpfd])\.?\s*:?\s*)?\+?[\d][\d ()./-]{6,}\d",
    re.IGNORECASE,
)
_ADDRESS: Final = re.compile(r"(?:e-?mail|correo)?\s*:?\s*[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.I)
_WEB: Final = re.compile(r"(?:web\s*:?\s*)?(?:https?://|www\.)\S+", re.IGNORECASE)
_NAME_WORD: Final = re.compile(r"[^\W\d_][\w'’.-]*", re.UNICODE)


def _folded(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


def _contact_line(line: str) -> bool:
    """A line that is only contact details (every part of it, when split by "|" or "·")."""
    parts = [p.strip() for p in re.split(r"[|·•]", line) if p.strip()]
    patterns = (_PHONE, _ADDRESS, _WEB)
    return bool(parts) and all(any(p.fullmatch(part) for p in patterns) for part in parts)


def _name_like(line: str) -> bool:
    words = line.split()
    return 1 <= len(words) <= 4 and all(
        _NAME_WORD.fullmatch(w) is not None and w[0].isupper() for w in words
    )


def _is_senders_name(line: str, sender_name: str | None) -> bool:
    if not sender_name:
        return False
    name, first = _folded(line), _folded(sender_name)
    return bool(name) and (name == first or name == first.split(" ", 1)[0])


def _signature_block(block: str, sender_name: str | None) -> bool:
    lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
    if not lines or len(lines) > MAX_LINES:
        return False
    if any(len(line) > MAX_LINE or line.endswith("?") for line in lines):
        return False
    if _is_senders_name(lines[0], sender_name):
        return True
    return _name_like(lines[0]) and any(_contact_line(line) for line in lines[1:])


def strip_signature(text: str, sender_name: str | None = None) -> str:
    """`text` without a trailing name-and-contact block (see the module's note)."""
    kept = text.rstrip()
    breaks = list(_PARAGRAPH_BREAK.finditer(kept))
    starts = [b for b in breaks[-2:] if b is breaks[-1] or _one_line(kept, b, breaks[-1])]
    for start in starts:  # the two-paragraph block first, then the last paragraph alone
        above, block = kept[: start.start()].rstrip(), kept[start.end() :]
        if above.strip() and _signature_block(block, sender_name):
            return above
    return text


def _one_line(text: str, start: re.Match[str], end: re.Match[str]) -> bool:
    return "\n" not in text[start.end() : end.start()].strip()
