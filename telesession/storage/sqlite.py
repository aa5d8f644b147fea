"""SQLiteStorage: every session in one SQLite database, shared by the threads and processes of one host."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import threading
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

import orjson

from ..errors import CorruptRecordError, StorageError
from ._files import HeldLease, LockFile, acquire_with
from .base import JSONValue, SessionStorage, dump_json

__all__ = ["SQLiteStorage"]

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Writers of several processes queue on SQLite's write lock; a write takes tens of
# microseconds, so waiting this long means something is wrong, not merely busy.
_BUSY_TIMEOUT = 30.0
_KEYS_PAGE = 1000
_OPENING = "\x00telesession: opening the database"  # the lock byte held while a process sets the database up


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

    Processes sharing the database exclude each other per key through one lock file beside it
    (beside the real file, if ``path`` is a symlink), ``<path>-telesession.lock``, whatever the
    number of keys (see ``_files.LockFile``; the name keeps clear of ``<path>.lock``, which
    SQLite's dotfile locking uses); the OS frees a key when its holder dies. The
    ``<path>.locks/`` directory of earlier versions is left alone: remove it by hand, and don't
    run processes of both versions on one database at once (they lock in different places).
    Writers of several processes wait up to 30 s for each other (busy timeout).

    Missing parent directories and the database are created, readable by the owner only, so
    that SQLite gives its ``-wal`` and ``-shm`` files the same mode, whatever the umask; an
    existing database (and ``-wal``, ``-shm``) of this user that others could read is narrowed
    to owner-only. A file that is not a SQLite database, or a database or directory this
    process cannot write, raises ``StorageError`` naming the path here, at construction.
    ``table`` must be a plain SQL identifier (``ValueError`` otherwise).
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
        # OR REPLACE: a row already at the new key is deleted, in the same statement.
        self._rename_sql = f'UPDATE OR REPLACE "{table}" SET key = ? WHERE key = ?'
        self._first_keys_sql = f'SELECT key FROM "{table}" ORDER BY key LIMIT {_KEYS_PAGE}'
        self._next_keys_sql = f'SELECT key FROM "{table}" WHERE key > ? ORDER BY key LIMIT {_KEYS_PAGE}'
        # One connection guarded by a lock, not one per thread: a get+set measured 12-14 us
        # against 11-16 us per thread with 1-4 threads (noise), and one connection is simpler
        # to close from any thread and to replace after fork().
        self._mutex = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _make_private(self.path)
            if not os.access(self.path, os.W_OK):
                # Said here, before the lock file beside it (which such a process often can't open either).
                raise sqlite3.OperationalError("attempt to write a readonly database")
            # Beside the real file (a symlinked path must lock where the others do); the table's
            # name is mixed into each key's byte, so one key in two tables is two locks.
            real = Path(os.path.realpath(self.path))
            self._lock = LockFile(real.with_name(real.name + "-telesession.lock"), namespace=table)
            self._conn = self._connect()
        except (OSError, sqlite3.Error) as e:
            raise StorageError(f"cannot open SQLite session database {self._location}: {e}", location=self._location, original_error=e) from e

    def _connect(self) -> sqlite3.Connection:
        self._pid = os.getpid()
        # isolation_level=None: every statement commits on its own; no transaction is left open.
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        # One process at a time: switching a new database to WAL does not wait for the busy
        # timeout, so processes opening one fresh database together failed ("database is locked").
        try:
            release = self._lock.hold(_OPENING)
        except StorageError as e:
            conn.close()
            raise StorageError(
                f"cannot open SQLite session database {self._location}: its lock file {e.location}: {e.original_error}",
                location=e.location, original_error=e.original_error,
            ) from e
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
        finally:
            assert release is not None
            release()
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid():
            # Neither a connection nor a lock may cross fork(): the child makes its own and
            # leaves the inherited connection alone (closing it could drop the parent's locks).
            self._mutex = threading.Lock()
            self._conn = self._connect()
        return self._conn

    def _error(self, action: str, key: str | None, e: sqlite3.Error) -> StorageError:
        about = f"key {key!r}" if key is not None else "sessions"
        return StorageError(
            f"SQLite session database {self._location}: cannot {action} {about}: {e}", key=key, location=self._location, original_error=e
        )

    def _run(self, action: str, key: str | None, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            conn = self._connection()
            with self._mutex:
                return conn.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise self._error(action, key, e) from e

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
        """Delete every row of the table."""
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

    def acquire(self, key: str, *, blocking: bool = True) -> HeldLease | None:
        """Hold ``key`` against every process using this table (a byte of the lock file), then read it."""
        return acquire_with(self._lock, self, key, blocking)

    def rename(self, key: str, new_key: str) -> bool:
        """Move ``key``'s row to ``new_key`` (replacing a row there) in one statement; the value's bytes stay as they are."""
        try:
            conn = self._connection()
            with self._mutex:
                moved = conn.execute(self._rename_sql, (_raw(new_key), _raw(key))).rowcount
        except sqlite3.Error as e:
            raise self._error("rename", key, e) from e
        return moved > 0

    def identity(self) -> Hashable:
        """The database's real path and the table: storages on one table of one file are one store."""
        return ("sqlite", os.path.realpath(self.path), self.table)

    def close(self) -> None:
        self._lock.close()
        with self._mutex:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteStorage({str(self.path)!r}, table={self.table!r})"


def _make_private(path: Path) -> None:
    """Create the database file owner-only, or narrow an existing one of ours (and its -wal, -shm).

    SQLite creates a database 0644 less the umask, and gives the -wal and -shm files the mode
    of the database file; so a database made 0600 here keeps all three private.
    """
    if os.name != "posix":
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except FileExistsError:
        pass
    else:
        try:
            os.fchmod(fd, 0o600)  # a umask such as 0o277 would have taken the owner's write bit
        finally:
            os.close(fd)
    for suffix in ("", "-wal", "-shm"):
        try:
            info = os.stat(f"{path}{suffix}")
            if info.st_uid == os.geteuid() and info.st_mode & 0o077:
                os.chmod(f"{path}{suffix}", stat.S_IMODE(info.st_mode) & 0o700)
        except FileNotFoundError:
            pass

