"""FileStorage: one JSON file per session in a directory, for bots that run on one host."""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterator
from pathlib import Path

import orjson

from ..errors import CorruptRecordError, StorageError
from ._files import (
    HeldLease,
    LockFile,
    NotRegularFile,
    acquire_with,
    filename_key,
    key_filename,
    list_names,
    read_regular,
    remove_stale_temps,
    write_atomic,
)
from .base import JSONValue, SessionStorage, dump_json

__all__ = ["FileStorage"]

_SUFFIX = ".json"


def _key_member(key: str) -> bytes:
    """The record's first member: ``"key":"<key>"``, or for a key JSON can't hold (one with lone
    surrogates, which UTF-8 can't encode) ``"key_hex":"<its UTF-8 bytes, surrogatepass, in hex>"``."""
    try:
        return b'"key":' + orjson.dumps(key)
    except orjson.JSONEncodeError:
        return b'"key_hex":"' + key.encode("utf-8", "surrogatepass").hex().encode("ascii") + b'"'


def _head(key: str) -> bytes:
    """What every record of ``key`` written here starts with; the value's JSON and ``}`` follow."""
    return b"{" + _key_member(key) + b',"value":'


def _document_key(document: object) -> str | None:
    """The key a parsed record names, or ``None`` when it names none."""
    if not isinstance(document, dict):
        return None
    key = document.get("key")
    if isinstance(key, str):
        return key
    hexed = document.get("key_hex")
    if isinstance(hexed, str):
        try:
            return bytes.fromhex(hexed).decode("utf-8", "surrogatepass")
        except ValueError:
            return None
    return None


class FileStorage(SessionStorage):
    """Sessions as small JSON files in ``path``, safe for several processes at once.

    - One file per key, so a save costs the same with ten or a million stored sessions.
    - Every write is atomic (temp file, fsync, rename): a process killed at any moment leaves
      each record old or new, never torn. The directory is not fsynced after the rename, so a
      power cut may bring back the previous version of a record, never a broken one. Temp
      files of writers killed mid-write are removed when a ``FileStorage`` is next made on the
      directory, never one a live writer uses (a scan: ~40 ms per 100,000 stored sessions).
    - Processes exclude each other through one lock file, ``path/.lock``, whatever the number of
      keys (see ``_files.LockFile``); the OS frees a key when its holder dies. The ``.locks/``
      directory of earlier versions is left alone: remove it by hand, and don't run processes of
      both versions on one directory at once (they lock in different places).
    - Any key string maps to a distinct file name inside ``path`` (see ``_files.key_filename``).
      Each file also records its key (``{"key": ..., "value": ...}``; ``"key_hex"`` for a key
      with lone surrogates), so ``keys()`` works for hashed names too; ``rename`` rewrites it.
    - Files and the directory (when created here) are readable by the owner only.
    - A file that is not a valid record raises ``CorruptRecordError`` naming key and path, and
      is left as it is; so does anything that is not a regular file (a FIFO, a directory, a
      symlink, which is never followed), at once, without blocking.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).absolute()
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            remove_stale_temps(self.path, _SUFFIX)
        except OSError as e:
            raise StorageError(f"cannot use {self.path} for sessions: {e}", location=str(self.path), original_error=e) from e
        self._lock = LockFile(self.path / ".lock")

    def file(self, key: str) -> Path:
        """The file that holds ``key``'s session (it may not exist)."""
        return self.path / (key_filename(key) + _SUFFIX)

    def get(self, key: str) -> JSONValue | None:
        path = self.file(key)
        raw = self._read(key, path)
        return None if raw is None else self._parse(key, path, raw)

    def set(self, key: str, value: JSONValue) -> None:
        raw = _head(key) + dump_json(key, value) + b"}"
        path = self.file(key)
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
        """Whether anything is stored under ``key``, readable or not."""
        path = self.file(key)
        try:
            os.lstat(path)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise StorageError(f"cannot look for session {key!r} at {path}: {e}", key=key, location=str(path), original_error=e) from e
        return True

    def clear(self) -> None:
        for name in list(list_names(self.path, _SUFFIX)):
            path = self.path / (name + _SUFFIX)
            try:
                path.unlink(missing_ok=True)
            except OSError as e:
                raise StorageError(f"cannot delete {path}: {e}", location=str(path), original_error=e) from e

    def keys(self) -> Iterator[str]:
        """Every stored key; a hashed name (a long key) whose file can't be read raises ``CorruptRecordError``."""
        for name in list_names(self.path, _SUFFIX):
            key = filename_key(name)
            if key is None:  # a long key, stored under its hash: the file knows it
                path = self.path / (name + _SUFFIX)
                try:
                    raw = read_regular(path)
                    key = None if raw is None else _document_key(orjson.loads(raw))
                except (NotRegularFile, orjson.JSONDecodeError) as e:
                    raise CorruptRecordError(f"{path} is not a session record: {e}; it was left as it is", location=str(path)) from e
                except OSError as e:
                    raise StorageError(f"cannot read {path}: {e}", location=str(path), original_error=e) from e
                if raw is not None and key is None:
                    raise CorruptRecordError(f"{path} is not a session record (it names no key); it was left as it is", location=str(path))
            if key is not None:
                yield key

    def acquire(self, key: str, *, blocking: bool = True) -> HeldLease | None:
        """Hold ``key`` against other processes (a byte of ``path/.lock``), then read it."""
        return acquire_with(self._lock, self, key, blocking)

    def rename(self, key: str, new_key: str) -> bool:
        """Move ``key``'s file to ``new_key``'s name, replacing what is there.

        The record's key is rewritten in its first bytes; the value's bytes are kept as they
        are. A file that is not a record of ``key`` (unreadable) is moved byte for byte, and
        stays unreadable under its new name. Not atomic as a pair: a crash in the middle may
        leave the record under both keys, never under neither.
        """
        src, dst = self.file(key), self.file(new_key)
        raw = self._read(key, src)
        if raw is None:
            return False
        if src == dst:
            return True
        head = _head(key)
        moved: bytes | None = None
        if raw.startswith(head):  # as written here: swap the key, keep the value's bytes
            moved = _head(new_key) + raw[len(head) :]
        else:  # written by hand, perhaps: re-encode it if it is a record of this key
            try:
                moved = _head(new_key) + dump_json(new_key, self._parse(key, src, raw)) + b"}"
            except CorruptRecordError:
                moved = None  # unreadable: it moves as it is
        try:
            if moved is None:
                os.replace(src, dst)
            else:
                write_atomic(dst, moved)
                src.unlink(missing_ok=True)
        except OSError as e:
            raise StorageError(
                f"cannot move session {key!r} to {new_key!r} ({src} -> {dst}): {e}", key=key, location=str(src), original_error=e
            ) from e
        return True

    def identity(self) -> Hashable:
        """The directory's real path: two ``FileStorage`` objects on one directory (through symlinks too) are one store."""
        return ("file", os.path.realpath(self.path))

    def close(self) -> None:
        self._lock.close()

    @staticmethod
    def _read(key: str, path: Path) -> bytes | None:
        try:
            return read_regular(path)
        except NotRegularFile as e:
            raise CorruptRecordError(
                f"session {key!r}: {path} is {e.kind}, not a record file; it was left as it is", key=key, location=str(path)
            ) from None
        except OSError as e:
            raise StorageError(f"cannot read session {key!r} from {path}: {e}", key=key, location=str(path), original_error=e) from e

    @staticmethod
    def _parse(key: str, path: Path, raw: bytes) -> JSONValue:
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            problem = f"is not valid JSON ({e})"
        else:
            if _document_key(document) == key and "value" in document:
                return document["value"]
            problem = "is not a session record of this key"
        raise CorruptRecordError(f"session {key!r}: {path} {problem}; it was left as it is", key=key, location=str(path))

    def __repr__(self) -> str:
        return f"FileStorage({str(self.path)!r})"
