"""JSON as telesession stores it: orjson, refusing what would not come back as it went in."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from math import isfinite
from typing import Any

import orjson

from .errors import EncodeError

__all__ = ["MAX_DEPTH", "dumps", "dumps_unchecked", "joined_path", "loads", "shown_path", "vouched"]

# Refuse datetimes, dataclasses and subclasses of str/int/dict/list instead of silently turning
# them into strings or plain types.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS

MAX_DEPTH = 254
"""How many lists and dicts orjson writes nested in one another: it refuses a 255th with
"Recursion limit reached" (measured with orjson 3.9.15 and 3.13)."""

_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}

loads = orjson.loads


def dumps(value: Any, *, key: str | None = None) -> bytes:
    """``value`` as compact JSON bytes.

    Raises ``EncodeError``, with ``key`` and the ``path`` of the first offending part
    (``cart.items[2].price``; "" for ``value`` itself), for what would not load back as it is:
    NaN and infinities (orjson would write null), integers outside [-2**63, 2**64), dict keys
    that are not str, any type but dict, list, tuple, str, int, float, bool and None (subclasses
    included), and lists and dicts nested more than ``MAX_DEPTH`` deep.
    """
    try:
        out = orjson.dumps(value, option=_OPTIONS)
    except TypeError as e:
        raise _refusal(value, key, e) from e
    # orjson writes NaN and infinities as null: output without one holds none, and skips the
    # walk ("null" inside a string only costs a walk). find() rather than `in`, which first
    # tries its argument as an int: the discarded TypeError doubles the cost of a small session.
    if out.find(b"null") >= 0 and value is not vouched and not _all_finite(value):
        raise _refusal(value, key, None)
    return out


vouched: Any = None
"""An object already checked for NaN and infinity: ``dumps`` of that very object skips its look.

The engine checks a record as it builds it (the codec refuses non-finite floats of a dataclass
session on its way through them), sets ``vouched`` to it around the storage's write and back to
``None``; the storage's ``dumps`` then skips its walk, which costs a cart session a few
microseconds whenever it holds a None. One for the process, a plain global (a thread-local cost
more than the walk it saves for small sessions): another thread's record set in between only
means one walk, and ``is`` never matches an object that was not vouched (the global keeps the
vouched one alive, so its id can't be reused).
"""


def dumps_unchecked(value: Any, *, key: str | None = None) -> bytes:
    """``dumps`` without the look for NaN and infinities (written as null): for comparing, never for storing."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError as e:
        raise _refusal(value, key, e) from e


def joined_path(segments: Sequence[str]) -> str:
    """The path that ``segments`` (``.name``, ``[i]``) make: ``items[2].price``."""
    return "".join(segments).removeprefix(".")


def shown_path(segments: Sequence[str], keep: int = 4) -> str:
    """``joined_path``, with all but ``keep`` segments at each end left out as "..." (for messages)."""
    if len(segments) > 2 * keep + 1:
        return joined_path(segments[:keep]) + "..." + joined_path(segments[-keep:])
    return joined_path(segments)


def _refusal(value: Any, key: str | None, error: TypeError | None) -> EncodeError:
    """The EncodeError for ``value``, naming where it first holds what JSON can't, and what."""
    about = f"session {key!r}" if key is not None else "the value"
    found = _unstorable(value)
    if found is None:  # an orjson refusal this module does not know: pass on its words
        return EncodeError(f"{about} cannot be stored: {error}", key=key, original_error=error)
    segments, what = found
    shown = shown_path(segments) or "it"
    return EncodeError(f"{about} cannot be stored: {shown} holds {what}", path=joined_path(segments), key=key, original_error=error)


def _all_finite(value: Any) -> bool:
    """Whether no float in ``value`` (a value orjson just wrote) is NaN or infinite."""
    containers: list[Any] = [[value]]
    while containers:  # a stack, not recursion (orjson has bounded the depth already)
        container = containers.pop()
        for item in container.values() if type(container) is dict else container:
            t = type(item)
            if t is float:
                if not isfinite(item):
                    return False
            elif t is dict or t is list or t is tuple:  # `in (dict, ...)` would cost a third more
                containers.append(item)
    return True


def _unstorable(value: Any) -> tuple[list[str], str] | None:
    """The path segments of the first part of ``value`` JSON cannot hold, and what it is; None if none.

    Depth first in document order, with a stack of open containers instead of recursion, so a
    value nested 10,000 deep costs MAX_DEPTH steps down, not a RecursionError.
    """
    open_items: list[Iterator[tuple[str, Any]]] = []
    path: list[str] = []  # where ``value`` is: its segment in each open container
    while True:
        t = type(value)
        if t is dict or t is list or t is tuple:
            if len(open_items) == MAX_DEPTH:
                return path, f"a {t.__name__} nested too deep (orjson writes {MAX_DEPTH} levels at most)"
            if t is dict:
                for name in value:
                    if type(name) is not str:
                        return path, f"a key that is not a str: {_shown(name)}"
                open_items.append(("." + name, item) for name, item in value.items())
            else:
                open_items.append((f"[{i}]", item) for i, item in enumerate(value))
        elif what := _unstorable_leaf(value):
            return path, what
        while open_items:  # on to the next item, closing the containers that have none left
            following = next(open_items[-1], None)
            if following is not None:
                del path[len(open_items) - 1 :]
                segment, value = following
                path.append(segment)
                break
            open_items.pop()
        else:
            return None


def _unstorable_leaf(value: Any) -> str:
    """What is wrong with ``value``, which is not a list, tuple or dict; "" if JSON holds it."""
    t = type(value)
    if t is float:
        return "" if isfinite(value) else f"{_NON_FINITE[repr(value)]}, which JSON can't hold"
    if t is int:
        return "" if -(2**63) <= value < 2**64 else f"an integer outside JSON's 64-bit range: {_shown(value)}"
    if value is None or t is str or t is bool:
        return ""
    return f"a value of type {t.__qualname__}, which is not JSON"


def _shown(value: Any) -> str:
    """``repr(value)``; a very long int by its size, as repr() of one raises ValueError (sys.set_int_max_str_digits)."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an int of {value.bit_length()} bits"
    return repr(value)
