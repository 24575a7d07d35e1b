"""JSON from outside, parsed with the limits the rest of Sastre relies on.

`json.loads` accepts what Sastre cannot store or process: nesting thousands deep (later a
`RecursionError` wherever the value is walked again), a lone UTF-16 surrogate such as "\\ud800"
(no UTF-8 encoding exists, so the database driver fails), `NaN` and `Infinity` (neither
PostgreSQL's JSON nor any other JSON parser takes them), and integers of thousands of digits
(Python refuses to convert them, with a `ValueError` that is not a `JSONDecodeError`). Each is
refused here, with the field it was found in, before any handler sees the value.

Pure functions: the HTTP layer (`sastre.web.errors.read_json_object`) and the chat socket turn an
`UnacceptableJson` into their own kind of refusal.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final, NoReturn

__all__ = ["MAX_DEPTH", "UnacceptableJson", "find_problem", "loads"]

# Deeper than any body Sastre accepts (an attribute holding a list of objects is depth 4), and
# far below the interpreter's recursion limit, which whatever walks the value next shares.
MAX_DEPTH: Final = 64
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


class UnacceptableJson(ValueError):
    """Valid or not, JSON that Sastre will not take; `field` is where ("" for the body)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field or 'body'}: {reason}")
        self.field = field
        self.reason = reason


def _no_constants(name: str) -> NoReturn:
    raise UnacceptableJson("", f"{name} is not a number JSON allows")


_MAX_FIELD: Final = 100  # a field is named, not quoted at any length the client chose


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _field(path: str) -> str:
    return path if len(path) <= _MAX_FIELD else path[: _MAX_FIELD - 1] + "…"


def _top(path: str) -> str:
    # Too deep is a property of the whole member; its path would be a list of sixty-odd [0]s.
    return _field(re.split(r"[.\[]", path, maxsplit=1)[0])


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
                if isinstance(key, str) and _SURROGATE.search(key):
                    # The key cannot be shown either: name where it is.
                    return UnacceptableJson(_field(path), "a name holds a lone UTF-16 surrogate")
                pending.append((child, _child(path, key), depth + 1))
        elif isinstance(item, str):
            if _SURROGATE.search(item):
                reason = "holds a lone UTF-16 surrogate (not Unicode text)"
                return UnacceptableJson(_field(path), reason)
        elif isinstance(item, float) and not math.isfinite(item):
            return UnacceptableJson(_field(path), "is too large a number")
    return None


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text; raise `json.JSONDecodeError` if it is not JSON, `UnacceptableJson` if it
    is JSON Sastre does not take."""
    try:
        value = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        # The parser gives up a few hundred levels down; the checker would have refused it anyway.
        raise UnacceptableJson("", f"nested deeper than {max_depth} levels") from None
    except ValueError as e:
        if isinstance(e, json.JSONDecodeError | UnacceptableJson | UnicodeDecodeError):
            raise
        # An integer of more digits than Python converts (sys.get_int_max_str_digits).
        raise UnacceptableJson("", "holds a number with too many digits") from None
    problem = find_problem(value, max_depth)
    if problem is not None:
        raise problem
    return value
