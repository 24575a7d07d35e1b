"""Forms from outside (`application/x-www-form-urlencoded`, `multipart/form-data`), read safely.

aiohttp's `request.post()` raises on a body that is not the form its Content-Type claims: a
`UnicodeDecodeError` for bytes that are not text in the declared charset, a `LookupError` for a
charset nobody knows, a `ValueError` for a multipart body with no boundary, a broken one or a part
with no name, a `RuntimeError` for a part in an encoding it cannot undo. Left alone, each is a 500
on a route anyone may call (the webhooks are parsed before their signature can be checked, the
unsubscribe and preference links need no login). Here each becomes an `UnreadableForm` naming
what is wrong, which `sastre.web.errors` answers with a 400.

Every value of a form Sastre takes is text: a file upload is refused by the field's name, and a
part sent as bytes is kept only if it is UTF-8. A NUL character is refused too, as in JSON
(`sastre.web.json_input`): PostgreSQL cannot store it in a text column.
"""

from __future__ import annotations

from typing import Final, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDict, MultiDictProxy

__all__ = ["ROOT", "UnreadableForm", "read_form"]

# The name of the whole body, where a problem has no field to name.
ROOT: Final = "body"
_MAX_REASON: Final = 200  # aiohttp's messages quote the client's bytes; a reason stays short


class UnreadableForm(ValueError):
    """A POSTed form Sastre cannot read; `field` is where (`ROOT` for the body as a whole)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _why(exc: Exception, content_type: str) -> str:
    """What is wrong with the body, in words a client can act on."""
    if isinstance(exc, UnicodeDecodeError):
        return f"is not {exc.encoding} text (byte {exc.start} cannot be decoded)"
    if isinstance(exc, LookupError):
        return "declares a charset that is not known"
    said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "boundary missed" in said:
        return f"is {content_type} without a boundary parameter"
    if len(said) > _MAX_REASON:
        said = said[: _MAX_REASON - 1] + "…"
    return f"is not valid {content_type or 'form data'}: {said}"


def _text(name: str, value: object, *, keep_nul: bool = False) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bytes | bytearray):  # a multipart part with a non-text Content-Type
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise UnreadableForm(name, "is not UTF-8 text") from None
    else:  # a file upload: nothing Sastre's forms take
        raise UnreadableForm(name, "is a file, not text")
    if "\x00" in text and not keep_nul:
        raise UnreadableForm(name, "holds a NUL character, which cannot be stored")
    return text


async def read_form(request: web.Request, *, keep_nul: bool = False) -> MultiDictProxy[str]:
    """The POSTed form, every value text; `UnreadableForm` (a 400) if the body is not one.

    A body that is not a form at all (another Content-Type, or none) reads as an empty form, as
    aiohttp reads it: the route decides whether that is enough. `keep_nul`: values holding a
    NUL are kept as sent, for a route that must check a signature over them first (and then
    replaces the NUL itself)."""
    try:
        posted = await request.post()
    except (ValueError, LookupError, RuntimeError, HttpProcessingError) as exc:
        # ValueError covers UnicodeDecodeError; RuntimeError is an unknown part encoding.
        raise UnreadableForm(ROOT, _why(exc, request.content_type)) from None
    if all(isinstance(v, str) and (keep_nul or "\x00" not in v) for v in posted.values()):
        # The usual case (every urlencoded form): aiohttp's own, checked in place.
        return cast("MultiDictProxy[str]", posted)
    form: MultiDict[str] = MultiDict()
    for name, value in posted.items():
        form.add(name, _text(name, value, keep_nul=keep_nul))
    return MultiDictProxy(form)
