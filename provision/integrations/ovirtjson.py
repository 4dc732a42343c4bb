"""Scalars in the oVirt engine's JSON, read as the SDK reads them.

The engine's REST API writes every scalar as a string: `"configured": "false"`, `"mtu": "1500"`,
`"port": "54321"` (ovirt-engine-api-model, type Boolean: "the valid values are the strings false and
true ... the server will always return lower case values"; 0 and 1 are accepted for backwards
compatibility). `bool("false")` is True, so nothing read from the engine goes through `bool()` or a
comparison with an int: these two functions are the only way in, and they follow
ovirtsdk4/reader.py (`Reader.parse_boolean`, `Reader.parse_integer`). A JSON boolean or number
(what a hand-made fake would send) is taken as it is, and anything else is an error naming the field,
never a guess."""

from __future__ import annotations

from .engine import EngineError


def boolean(value, field: str) -> bool:
    """`"true"`/`"false"` in any case, or `"1"`/`"0"`; absent (None) is False."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise EngineError(f"{field}: {value!r} is not a boolean as the engine writes them ('true' or 'false')")


def integer(value, field: str) -> int | None:
    """`"1500"` -> 1500; absent (None or "") is None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise EngineError(f"{field}: {value!r} is not an integer")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip(), 10)
    except ValueError:
        raise EngineError(f"{field}: {value!r} is not an integer as the engine writes them") from None
