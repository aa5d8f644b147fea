"""SessionStorage: the small interface every backend implements."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import orjson

from ..errors import EncodeError

__all__ = ["SessionStorage", "JSONValue", "dump_json"]

JSONValue = Any
"""A value made only of dict (str keys), list, str, int, float, bool and None."""


def dump_json(key: str, value: JSONValue) -> bytes:
    """``value`` as JSON bytes, for backends; a value JSON cannot hold raises ``EncodeError`` naming ``key``."""
    try:
        return orjson.dumps(value)
    except TypeError as e:
        raise EncodeError(f"session {key!r} cannot be stored as JSON: {e}", key=key, original_error=e) from e


class SessionStorage(ABC):
    """Where sessions live between updates.

    A backend implements five verbs over JSON-compatible values: ``get``, ``set``, ``delete``,
    ``has`` and ``clear``. Values are what the middleware hands over (a small dict); a backend
    stores them as JSON and must return an equal value from ``get``, never the same object.

    Two verbs are optional:

    - ``lock(key)``: exclusion across processes. The middleware always serializes the updates
      of one key inside a process; a storage shared by several processes overrides ``lock`` so
      that they exclude each other too. The default does nothing, which is right for a storage
      that only one process uses.
    - ``keys()``: list the stored keys. The default raises ``NotImplementedError``.

    Errors: a record that exists but cannot be read raises ``CorruptRecordError`` and stays as
    it is; any other failure raises ``StorageError`` naming the key. Both name where the
    storage looked (``location``).
    """

    @abstractmethod
    def get(self, key: str) -> JSONValue | None:
        """The value stored under ``key``, or ``None`` when there is none."""

    @abstractmethod
    def set(self, key: str, value: JSONValue) -> None:
        """Store ``value`` under ``key``, replacing what was there, all or nothing."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing a key that is not there is not an error."""

    def has(self, key: str) -> bool:
        """Whether a value is stored under ``key``."""
        return self.get(key) is not None

    @abstractmethod
    def clear(self) -> None:
        """Remove every stored session. Not meant to race with live updates."""

    def keys(self) -> Iterator[str]:
        """Every stored key, in no particular order."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its keys")

    def lock(self, key: str) -> contextlib.AbstractContextManager[object]:
        """A context manager that holds ``key`` exclusively against other processes.

        Contract for implementers: the middleware enters it after it holds the key inside its
        own process, so one process never enters it twice for one key at the same time. Its
        ``__exit__`` may run on another thread than ``__enter__`` did: when telebot ends an
        update without calling ``post_process``, the hold is released by whichever thread finds
        it. The lock must free itself when its process dies.
        """
        return contextlib.nullcontext()

    def close(self) -> None:
        """Release connections and file handles. The storage is not used afterwards."""

    def __enter__(self) -> SessionStorage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
