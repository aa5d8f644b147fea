"""FileStorage: one JSON file per session in a directory, for bots that run on one host."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import orjson

from ..errors import CorruptRecordError, StorageError
from ._files import KeyLocks, filename_key, key_filename, list_names, write_atomic
from .base import JSONValue, SessionStorage, dump_json

__all__ = ["FileStorage"]

_SUFFIX = ".json"


class FileStorage(SessionStorage):
    """Sessions as small JSON files in ``path``, safe for several processes at once.

    - One file per key, so a save costs the same with ten or a million stored sessions.
    - Every write is atomic (temp file, fsync, rename): a process killed at any moment leaves
      each record old or new, never torn. The directory is not fsynced after the rename, so a
      power cut may bring back the previous version of a record, never a broken one.
    - ``lock(key)`` holds a lock file in ``path/.locks``; the OS frees it when its process
      dies. Lock files stay behind after release (empty files).
    - Any key string maps to a distinct file name inside ``path`` (see ``_files.key_filename``);
      each file also records its key, so ``keys()`` works for hashed names too.
    - Files and the directory (when created here) are readable by the owner only.
    - A file that is not a valid record raises ``CorruptRecordError`` naming key and path,
      and is left as it is.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).absolute()
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._locks = KeyLocks(self.path / ".locks")
        except OSError as e:
            raise StorageError(f"cannot use {self.path} for sessions: {e}", location=str(self.path), original_error=e) from e

    def file(self, key: str) -> Path:
        """The file that holds ``key``'s session (it may not exist)."""
        return self.path / (key_filename(key) + _SUFFIX)

    def get(self, key: str) -> JSONValue | None:
        path = self.file(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(f"cannot read session {key!r} from {path}: {e}", key=key, location=str(path), original_error=e) from e
        return self._parse(key, path, raw)

    def set(self, key: str, value: JSONValue) -> None:
        path = self.file(key)
        raw = dump_json(key, {"key": key, "value": value})
        try:
            write_atomic(path, raw)
        except OSError as e:
            raise StorageError(f"cannot write session {key!r} to {path}: {e}", key=key, location=str(path), original_error=e) from e

    def delete(self, key: str) -> None:
        path = self.file(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise StorageError(f"cannot delete session {key!r} at {path}: {e}", key=key, location=str(path), original_error=e) from e

    def has(self, key: str) -> bool:
        return self.file(key).exists()

    def clear(self) -> None:
        for name in list(list_names(self.path, _SUFFIX)):
            with contextlib.suppress(FileNotFoundError):
                (self.path / (name + _SUFFIX)).unlink()

    def keys(self) -> Iterator[str]:
        for name in list_names(self.path, _SUFFIX):
            key = filename_key(name)
            if key is None:  # a long key, stored under its hash: the file knows it
                path = self.path / (name + _SUFFIX)
                with contextlib.suppress(FileNotFoundError):
                    key = orjson.loads(path.read_bytes())["key"]
            if key is not None:
                yield key

    def lock(self, key: str) -> contextlib.AbstractContextManager[object]:
        return self._locks.lock(key)

    @staticmethod
    def _parse(key: str, path: Path, raw: bytes) -> JSONValue:
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            problem = f"is not valid JSON ({e})"
        else:
            if isinstance(document, dict) and document.get("key") == key and "value" in document:
                return document["value"]
            problem = "is not a session record of this key"
        raise CorruptRecordError(
            f"session {key!r}: {path} {problem}; it was left as it is", key=key, location=str(path)
        )

    def __repr__(self) -> str:
        return f"FileStorage({str(self.path)!r})"
