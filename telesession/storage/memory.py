"""MemoryStorage: sessions in this process's memory, for tests and throwaway bots."""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from .base import JSONValue, SessionStorage, dump_json

__all__ = ["MemoryStorage"]


class MemoryStorage(SessionStorage):
    """Sessions kept in a dict, as JSON bytes; everything is lost when the process ends.

    Values are stored serialized, as the persistent storages store them: a handler never
    holds a reference into stored state, and a value that could not survive a restart fails
    here too, in development. Safe to share between threads; not between processes.
    """

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}

    def get(self, key: str) -> JSONValue | None:
        raw = self._records.get(key)
        return None if raw is None else orjson.loads(raw)

    def set(self, key: str, value: JSONValue) -> None:
        self._records[key] = dump_json(key, value)

    def delete(self, key: str) -> None:
        self._records.pop(key, None)

    def has(self, key: str) -> bool:
        return key in self._records

    def clear(self) -> None:
        self._records.clear()

    def keys(self) -> Iterator[str]:
        return iter(list(self._records))

    def __repr__(self) -> str:
        return f"MemoryStorage(<{len(self._records)} sessions>)"
