"""SQLiteStorage: every session in one SQLite database, shared by the threads and processes of one host."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ..errors import CorruptRecordError, StorageError
from ._files import KeyLocks
from .base import JSONValue, SessionStorage, dump_json

__all__ = ["SQLiteStorage"]

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Writers of several processes queue on SQLite's write lock; a write takes tens of
# microseconds, so waiting this long means something is wrong, not merely busy.
_BUSY_TIMEOUT = 30.0
_KEYS_PAGE = 1000


def _raw(key: str) -> bytes:
    # Keys are stored as UTF-8 bytes with surrogatepass so that every Python str round-trips,
    # lone surrogates included (sqlite3 refuses to bind those as TEXT). NUL is fine either way.
    return key.encode("utf-8", "surrogatepass")


class SQLiteStorage(SessionStorage):
    """Sessions as rows of one table (``key BLOB PRIMARY KEY, value BLOB``) in a SQLite database.

    The database runs in WAL mode with ``synchronous=NORMAL``: a committed save survives a
    crash of the process; a power loss may drop the last saves but never corrupts the
    database. Saves spread over a million stored sessions cost 2-3x those to ten: each
    reads and dirties a page of its own, written back and fsynced at the next WAL checkpoint
    (see ``benchmarks/scale.py``); saves to a few hundred active ones among a million, 1.5-2x.
    Keys are UTF-8 bytes, values orjson-encoded JSON; to read them by hand:
    ``SELECT CAST(key AS TEXT), CAST(value AS TEXT) FROM sessions``.

    ``lock(key)`` holds a lock file in ``<path>.locks/`` (one per key, kept after release),
    so processes sharing the database exclude each other; the OS drops the lock of a process
    that dies. Writers of several processes wait up to 30 s for each other (busy timeout).

    Missing parent directories and the database are created. A file that is not a SQLite
    database, or a database or directory this process cannot write, raises ``StorageError``
    naming the path here, at construction. ``table`` must be a plain SQL identifier
    (``ValueError`` otherwise).
    """

    def __init__(self, path: str | os.PathLike[str], *, table: str = "sessions"):
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError(f"table must be a plain SQL identifier (letters, digits, _), got {table!r}")
        self.path = Path(path).absolute()
        self.table = table
        self._location = str(self.path)
        self._get_sql = f'SELECT value FROM "{table}" WHERE key = ?'
        self._has_sql = f'SELECT 1 FROM "{table}" WHERE key = ?'
        self._set_sql = f'INSERT INTO "{table}" (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'
        self._delete_sql = f'DELETE FROM "{table}" WHERE key = ?'
        self._first_keys_sql = f'SELECT key FROM "{table}" ORDER BY key LIMIT {_KEYS_PAGE}'
        self._next_keys_sql = f'SELECT key FROM "{table}" WHERE key > ? ORDER BY key LIMIT {_KEYS_PAGE}'
        # One connection guarded by a lock, not one per thread: a get+set measured 12-14 us
        # against 11-16 us per thread with 1-4 threads (noise), and one connection is simpler
        # to close from any thread and to replace after fork().
        self._mutex = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._locks = KeyLocks(self.path.with_name(self.path.name + ".locks"))
            self._conn = self._connect()
        except (OSError, sqlite3.Error) as e:
            raise StorageError(f"cannot open SQLite session database {self._location}: {e}", location=self._location, original_error=e) from e

    def _connect(self) -> sqlite3.Connection:
        self._pid = os.getpid()
        # isolation_level=None: every statement commits on its own; no transaction is left open.
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # "file is not a database" shows up here
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f'CREATE TABLE IF NOT EXISTS "{self.table}" (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID')
            # SQLite opens a file it cannot write read-only and fails only at the first write:
            # write once, inside a transaction we roll back, to fail here instead.
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(self._set_sql, (b"", b"null"))
            finally:
                conn.execute("ROLLBACK")
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, action: str, key: str | None, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            if self._pid != os.getpid():
                # Neither a connection nor a lock may cross fork(): the child makes its own and
                # leaves the inherited connection alone (closing it could drop the parent's locks).
                self._mutex = threading.Lock()
                self._conn = self._connect()
            with self._mutex:
                return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            about = f"key {key!r}" if key is not None else "sessions"
            raise StorageError(
                f"SQLite session database {self._location}: cannot {action} {about}: {e}",
                key=key,
                location=self._location,
                original_error=e,
            ) from e

    def get(self, key: str) -> JSONValue | None:
        """The stored value, or ``None``; a row that is not valid JSON raises ``CorruptRecordError``."""
        rows = self._run("read", key, self._get_sql, (_raw(key),))
        if not rows:
            return None
        try:
            return orjson.loads(rows[0][0])
        except (orjson.JSONDecodeError, TypeError) as e:
            raise CorruptRecordError(
                f"session {key!r} in SQLite database {self._location} (table {self.table}) is not valid JSON: {e}",
                key=key,
                location=self._location,
                original_error=e,
            ) from e

    def set(self, key: str, value: JSONValue) -> None:
        """Store ``value``; one statement, so all or nothing. A value JSON cannot hold raises ``EncodeError``."""
        data = dump_json(key, value)
        self._run("write", key, self._set_sql, (_raw(key), data))

    def delete(self, key: str) -> None:
        self._run("delete", key, self._delete_sql, (_raw(key),))

    def has(self, key: str) -> bool:
        """Whether a row exists, readable or not."""
        return bool(self._run("read", key, self._has_sql, (_raw(key),)))

    def clear(self) -> None:
        """Delete every row of the table; lock files stay (see ``KeyLocks``)."""
        self._run("clear", None, f'DELETE FROM "{self.table}"')

    def keys(self) -> Iterator[str]:
        """Every key, in byte order, read a page at a time (keys saved meanwhile may or may not show)."""
        rows = self._run("list", None, self._first_keys_sql)
        while True:
            for (raw,) in rows:
                yield raw.decode("utf-8", "surrogatepass")
            if len(rows) < _KEYS_PAGE:
                return
            rows = self._run("list", None, self._next_keys_sql, (rows[-1][0],))

    def lock(self, key: str) -> contextlib.AbstractContextManager[object]:
        """Hold ``key`` against every process using this database (see the class docstring)."""
        return self._locks.lock(key)

    def close(self) -> None:
        with self._mutex:
            self._conn.close()

