"""JSON from outside, parsed with the limits the rest of Sastre relies on.

`json.loads` accepts what Sastre cannot store or process: nesting thousands deep (later a
`RecursionError` wherever the value is walked again), a lone UTF-16 surrogate such as "\\ud800"
(no UTF-8 encoding exists, so the database driver fails), a NUL character "\\u0000" (PostgreSQL
refuses it in text and JSON columns, SQLite truncates some uses of it), `NaN` and `Infinity`
(neither PostgreSQL's JSON nor any other JSON parser takes them), and integers of thousands of
digits (Python refuses to convert them, with a `ValueError` that is not a `JSONDecodeError`).
Each is refused here, with the field it was found in (`body` for the document itself), before
any handler sees the value.

`RecordId` is how a handler's body model reads a row's id: a JSON integer in range, strictly
(pydantic would otherwise take `true` as 1, `1.0` and `"1"` too).

Pure functions: the HTTP layer (`sastre.web.errors.read_json_object`) and the chat socket turn an
`UnacceptableJson` into their own kind of refusal.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from typing import Annotated, Any, Final

from annotated_types import Gt, Lt
from pydantic import Strict

__all__ = ["MAX_DEPTH", "ROOT", "RecordId", "UnacceptableJson", "find_problem", "loads"]

# Deeper than any body Sastre accepts (an attribute holding a list of objects is depth 4), and
# far below the interpreter's recursion limit, which whatever walks the value next shares.
MAX_DEPTH: Final = 64
# The name of the whole document, where a problem has no member to name.
ROOT: Final = "body"
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_NUL: Final = "\x00"
# What is wrong with a text, said in full.
_UNSTORABLE: Final = {
    "a lone UTF-16 surrogate": "holds a lone UTF-16 surrogate (not Unicode text)",
    "a NUL character (\\u0000)": "holds a NUL character (\\u0000), which cannot be stored",
}

# A row's id in a JSON body: an integer (booleans and numbers written otherwise refused) that
# fits the database's BIGINT.
RecordId = Annotated[int, Strict(), Gt(0), Lt(2**63)]


class UnacceptableJson(ValueError):
    """Valid or not, JSON that Sastre will not take; `field` is where (`ROOT` for the body)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    @property
    def whole(self) -> bool:
        """Is the document as a whole at fault (no member to blame)?"""
        return self.field == ROOT


@dataclass(frozen=True, slots=True)
class _Refused:
    """A number the parser met that is not taken; kept in place so its path can be named."""

    reason: str


def _constant(name: str) -> _Refused:
    return _Refused(f"{name} is not a number JSON allows")


def _integer(digits: str) -> int | _Refused:
    limit = sys.get_int_max_str_digits()  # 0: no limit
    if limit and len(digits.lstrip("-")) > limit:
        return _Refused("holds a number with too many digits")
    return int(digits)


_MAX_FIELD: Final = 100  # a field is named, not quoted at any length the client chose


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _field(path: str) -> str:
    if not path:
        return ROOT
    return path if len(path) <= _MAX_FIELD else path[: _MAX_FIELD - 1] + "…"


def _top(path: str) -> str:
    # Too deep is a property of the whole member; its path would be a list of sixty-odd [0]s.
    return _field(re.split(r"[.\[]", path, maxsplit=1)[0])


def _text_problem(text: str) -> str | None:
    """What makes `text` unstorable: "a lone UTF-16 surrogate", "a NUL character", or None."""
    if _SURROGATE.search(text):
        return "a lone UTF-16 surrogate"
    if _NUL in text:
        return "a NUL character (\\u0000)"
    return None


def find_problem(value: Any, max_depth: int = MAX_DEPTH) -> UnacceptableJson | None:
    """The first reason `value` (as parsed from JSON) cannot be accepted, or None.

    Iterative, so that checking a deep value cannot itself run out of stack."""
    pending: list[tuple[Any, str, int]] = [(value, "", 1)]
    while pending:
        item, path, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return UnacceptableJson(_top(path), f"nested deeper than {max_depth} levels")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str) and (problem := _text_problem(key)) is not None:
                    # The key cannot be shown either: name where it is.
                    return UnacceptableJson(_field(path), f"a name holds {problem}")
                pending.append((child, _child(path, key), depth + 1))
        elif isinstance(item, str):
            if (problem := _text_problem(item)) is not None:
                reason = _UNSTORABLE.get(problem, f"holds {problem}")
                return UnacceptableJson(_field(path), reason)
        elif isinstance(item, _Refused):
            return UnacceptableJson(_field(path), item.reason)
        elif isinstance(item, float) and not math.isfinite(item):
            return UnacceptableJson(_field(path), "is too large a number")
    return None


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text; raise `json.JSONDecodeError` if it is not JSON, `UnacceptableJson` if it
    is JSON Sastre does not take."""
    try:
        value = json.loads(text, parse_constant=_constant, parse_int=_integer)
    except RecursionError:
        # The parser gives up a few hundred levels down; the checker would have refused it anyway.
        raise UnacceptableJson(ROOT, f"nested deeper than {max_depth} levels") from None
    problem = find_problem(value, max_depth)
    if problem is not None:
        raise problem
    return value
