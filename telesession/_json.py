"""JSON as telesession stores it: orjson, refusing what would not come back as it went in."""

from __future__ import annotations

from typing import Any

import orjson

from .errors import EncodeError

__all__ = ["dumps", "loads"]

# Refuse datetimes, dataclasses and subclasses of str/int/dict/list instead of silently turning
# them into strings or plain types.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS

loads = orjson.loads


def dumps(value: Any, *, key: str | None = None) -> bytes:
    """``value`` as compact JSON bytes; what JSON can't hold raises ``EncodeError`` with ``path`` and ``key``."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError as e:
        path, what = _unstorable(value)
        about = f"session {key!r}" if key is not None else "the value"
        raise EncodeError(f"{about} cannot be stored: {path or 'it'} holds {what}", path=path, key=key, original_error=e) from e


def _unstorable(value: Any, path: str = "") -> tuple[str, str]:
    """The path of the first part of ``value`` that JSON cannot hold, and what it is."""
    if type(value) is dict:
        for name, item in value.items():
            if type(name) is not str:
                return path, f"a key {name!r} that is not a str"
            found = _unstorable(item, f"{path}.{name}" if path else name)
            if found[0] or found[1]:
                return found
        return "", ""
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            found = _unstorable(item, f"{path}[{i}]")
            if found[0] or found[1]:
                return found
        return "", ""
    if type(value) is int and not -(2**63) <= value < 2**64:
        return path, f"an integer too large for JSON ({value})"
    if value is None or type(value) in (str, int, float, bool):
        return "", ""
    return path, f"a {type(value).__name__}, which is not JSON"
