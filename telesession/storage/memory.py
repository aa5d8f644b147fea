"""MemoryStorage: sessions in this process's memory, for tests and throwaway bots."""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from .._json import dumps
from .base import JSONValue, SessionStorage

__all__ = ["MemoryStorage"]


class MemoryStorage(SessionStorage):
    """Sessions kept in a dict, as JSON bytes; everything is lost when the process ends.

    Values are stored serialized, as the persistent storages store them: a handler never
    holds a reference into stored state, and a value that could not survive a restart fails
    here too, in development. A stored session takes about its JSON's length in memory (see
    ``benchmarks/memory_use.py``). Safe to share between threads; not between processes. Every
    verb runs inline, in async code too: there is no I/O to wait for.
    """

    blocking_io = False

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}

    def get(self, key: str) -> JSONValue | None:
        raw = self._records.get(key)
        return None if raw is None else orjson.loads(raw)

    def set(self, key: str, value: JSONValue) -> None:
        # A copy of the right size: orjson's result keeps its whole working buffer allocated
        # (tracemalloc: 4,094 bytes held for a 486-byte session, 8x), though len() says 486.
        self._records[key] = memoryview(dumps(value, key=key)).tobytes()

    def delete(self, key: str) -> None:
        self._records.pop(key, None)

    def has(self, key: str) -> bool:
        return key in self._records

    def rename(self, key: str, new_key: str) -> bool:
        """Move the stored bytes to ``new_key`` (replacing what is there); ``False`` when ``key`` holds nothing."""
        raw = self._records.pop(key, None)
        if raw is None:
            return False
        self._records[new_key] = raw
        return True

    def clear(self) -> None:
        self._records.clear()

    def keys(self) -> Iterator[str]:
        return iter(list(self._records))

    def __repr__(self) -> str:
        return f"MemoryStorage(<{len(self._records)} sessions>)"
