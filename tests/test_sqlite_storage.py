"""SQLiteStorage quirks: WAL, bad files, permissions, processes, killed holders, odd keys."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import stat
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from telesession.errors import CorruptRecordError, StorageError
from telesession.storage.sqlite import SQLiteStorage

from .conftest import run_processes
from .test_file_storage import byte_is_held, leased

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "sessions.db"


@pytest.fixture
def store(db: Path) -> Iterator[SQLiteStorage]:
    storage = SQLiteStorage(db)
    yield storage
    storage.close()


def as_unprivileged(action: Callable[[], str]) -> str:
    """Run ``action`` without root's power to ignore file modes: in a forked child as nobody, if we are root."""
    if os.geteuid() != 0:
        return action()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.setgid(65534)
            os.setuid(65534)
            result = action()
        except BaseException as e:
            result = f"child failed: {e!r}"
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        result = pipe.read().decode()
    os.waitpid(pid, 0)
    return result


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory that nobody can reach (tmp_path's parents are private to root)."""
    with tempfile.TemporaryDirectory() as name:
        os.chmod(name, 0o777)
        yield Path(name)


def open_error(path: Path) -> str:
    try:
        SQLiteStorage(path).close()
    except StorageError as e:
        return f"{type(e).__name__}|{e.location}|{e}"
    return "opened"


def test_wal_is_on(store: SQLiteStorage, db: Path) -> None:
    """The database runs in WAL mode (readers never block the writer)."""
    store.set("k", {"v": 1})
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_lookups_use_the_primary_key(store: SQLiteStorage, db: Path) -> None:
    """Reads and writes search the primary key, so they cost the same with a million rows."""
    conn = sqlite3.connect(db)
    for sql in ("SELECT value FROM sessions WHERE key = ?", "DELETE FROM sessions WHERE key = ?"):
        plan = " ".join(str(row) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, (b"k",)))
        assert "SEARCH" in plan and "PRIMARY KEY" in plan, plan
    conn.close()


def test_not_a_database_is_refused_at_construction(db: Path) -> None:
    """A file that is not SQLite raises StorageError naming the path, and is left as it was."""
    content = b"just some notes, certainly not a database\n" * 20
    db.write_bytes(content)
    with pytest.raises(StorageError, match="not a database") as info:
        SQLiteStorage(db)
    assert str(db) in str(info.value) and info.value.location == str(db)
    assert isinstance(info.value.original_error, sqlite3.DatabaseError)
    assert db.read_bytes() == content


def test_read_only_file_is_refused_at_construction(world_dir: Path) -> None:
    """A database this process cannot write raises StorageError naming it, not a failure on first save."""
    db = world_dir / "ro.db"
    SQLiteStorage(db).close()
    db.chmod(0o444)
    kind, location, message = as_unprivileged(lambda: open_error(db)).split("|", 2)
    assert kind == "StorageError" and location == str(db)
    assert "readonly" in message and str(db) in message


def test_read_only_directory_is_refused_at_construction(world_dir: Path) -> None:
    """A new database in a directory this process cannot write raises StorageError naming it."""
    locked = world_dir / "locked"
    locked.mkdir(mode=0o555)
    db = locked / "new.db"
    kind, location, message = as_unprivileged(lambda: open_error(db)).split("|", 2)
    assert kind == "StorageError" and location == str(db) and str(db) in message


def test_odd_keys_round_trip(store: SQLiteStorage) -> None:
    """Keys with NUL, emoji, path pieces, 400 characters or a lone surrogate stay distinct, listable and lockable."""
    keys = ["", "\x00", "a\x00b", "🙂", "../x", "/etc/passwd", "k" * 400, "Case", "case", "\ud800", "%00"]
    for i, key in enumerate(keys):
        store.set(key, {"i": i})
        with store.lock(key):
            pass
    assert [store.get(key) for key in keys] == [{"i": i} for i in range(len(keys))]
    assert sorted(store.keys()) == sorted(keys)
    store.delete("\x00")
    assert store.get("\x00") is None and store.get("a\x00b") == {"i": 2}


def test_keys_are_listed_page_by_page(store: SQLiteStorage) -> None:
    """keys() reads in pages of 1000 and still returns each key exactly once."""
    for i in range(2500):
        store.set(f"chat:{i}", {"i": i})
    listed = list(store.keys())
    assert len(listed) == 2500 and set(listed) == {f"chat:{i}" for i in range(2500)}


def test_corrupt_row_is_reported_and_left_alone(store: SQLiteStorage, db: Path) -> None:
    """A row that is not JSON raises CorruptRecordError naming key and path; the row stays."""
    store.set("bad", {"v": 1})
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE sessions SET value = ? WHERE key = ?", (b"{not json", b"bad"))
    conn.close()
    with pytest.raises(CorruptRecordError, match="'bad'") as info:
        store.get("bad")
    assert info.value.location == str(db) and str(db) in str(info.value)
    assert store.has("bad")
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT value FROM sessions").fetchone() == (b"{not json",)
    finally:
        conn.close()


def test_tables_and_reopening(db: Path) -> None:
    """Data outlives the storage object; two tables in one file are separate; bad table names are refused."""
    with SQLiteStorage(db) as first, SQLiteStorage(db, table="other") as other:
        first.set("k", {"v": 1})
        other.set("k", {"v": 2})
        other.clear()
    with SQLiteStorage(db) as again:
        assert again.get("k") == {"v": 1}
    with pytest.raises(ValueError, match="identifier"):
        SQLiteStorage(db, table='x"; DROP TABLE sessions; --')


def test_closed_storage_raises_storage_error(db: Path) -> None:
    """Using a closed storage is a StorageError, not a raw sqlite3 error."""
    storage = SQLiteStorage(db)
    storage.close()
    with pytest.raises(StorageError, match="'k'"):
        storage.get("k")


def _increment(path: str, key: str, times: int) -> None:
    storage = SQLiteStorage(path)
    for _ in range(times):
        with storage.lock(key):
            value = storage.get(key) or {"n": 0}
            value["n"] += 1
            storage.set(key, value)
    storage.close()


def test_processes_lose_no_increment(db: Path) -> None:
    """4 processes x 100 locked read-modify-writes of one key: exactly 400."""
    run_processes(_increment, [(str(db), "counter", 100)] * 4)
    with SQLiteStorage(db) as storage:
        assert storage.get("counter") == {"n": 400}


def _write_many(path: str, worker: int, count: int) -> None:
    with SQLiteStorage(path) as storage:
        for i in range(count):
            storage.set(f"{worker}:{i}", {"i": i})


def test_concurrent_writers_wait_instead_of_failing(db: Path) -> None:
    """4 processes saving at once, no lock: the busy timeout queues them, nothing fails or goes missing."""
    run_processes(_write_many, [(str(db), n, 300) for n in range(4)])
    with SQLiteStorage(db) as storage:
        assert len(list(storage.keys())) == 1200


def _hold_forever(path: str, ready: Any) -> None:
    storage = SQLiteStorage(path)
    hold = storage.lock("k")  # keep a reference: a collected hold would release itself
    hold.__enter__()
    ready.set()
    time.sleep(60)


def test_lock_of_killed_process_is_freed(store: SQLiteStorage, db: Path) -> None:
    """A holder killed with SIGKILL leaves the key free: the OS drops its lock file lock."""
    ready = SPAWN.Event()
    child = SPAWN.Process(target=_hold_forever, args=(str(db), ready))
    child.start()
    assert ready.wait(30)
    waiting = threading.Event()
    entered = threading.Event()

    def contend() -> None:
        waiting.set()
        with store.lock("k"):
            entered.set()

    thread = threading.Thread(target=contend, daemon=True)
    thread.start()
    waiting.wait(5)
    assert not entered.wait(0.3), "the live holder should keep the key"
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join()
    assert entered.wait(5)
    thread.join(5)


def _set_in_child(storage: SQLiteStorage) -> None:
    storage.set("from-child", {"pid": os.getpid()})


def test_storage_survives_fork(store: SQLiteStorage) -> None:
    """A storage made before fork() works in the child: it opens its own connection."""
    store.set("k", {"v": 1})
    child = multiprocessing.get_context("fork").Process(target=_set_in_child, args=(store,))
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() while other tests' threads live; fork is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        child.start()
    child.join(30)
    assert child.exitcode == 0
    assert store.get("from-child") == {"pid": child.pid}
    assert store.get("k") == {"v": 1}


# -- one lock file, private files, rename, identity ---------------------------------------------


def test_a_thousand_keys_leave_one_lock_file(db: Path) -> None:
    """A thousand keys leased, saved and deleted leave the database's files and one lock file, nothing else."""
    with SQLiteStorage(db) as storage:
        for i in range(1000):
            leased(storage, f"chat:{i}").save({"i": i})
        for i in range(1000):
            leased(storage, f"chat:{i}").delete()
        names = sorted(os.listdir(db.parent))
    assert names == ["sessions.db", "sessions.db-shm", "sessions.db-telesession.lock", "sessions.db-wal"]


def test_one_key_in_two_tables_is_two_locks(db: Path) -> None:
    """The table's name is part of a key's byte: holding k in one table leaves k free in another."""
    first, other = SQLiteStorage(db, table="first"), SQLiteStorage(db, table="other")
    lease = leased(first, "k")
    assert byte_is_held(first._lock.path, first._lock.offset("k"))
    assert not byte_is_held(other._lock.path, other._lock.offset("k"))
    lease.release()
    first.close()
    other.close()


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=oct)
def test_database_files_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    """The database, its -wal and -shm and the lock file are 0600 under a umask of 022 or 000."""
    previous = os.umask(umask)
    try:
        with SQLiteStorage(tmp_path / "s.db") as storage:
            leased(storage, "k").save({"a": 1})
            modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in tmp_path.iterdir()}
    finally:
        os.umask(previous)
    assert modes == {name: "0o600" for name in ("s.db", "s.db-wal", "s.db-shm", "s.db-telesession.lock")}


def test_a_database_others_could_read_is_narrowed(tmp_path: Path) -> None:
    """An existing database of ours made 0644 (and its -wal, -shm) becomes owner-only when opened."""
    db = tmp_path / "s.db"
    previous = os.umask(0o022)
    try:
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
        assert stat.S_IMODE(db.stat().st_mode) == 0o644
        SQLiteStorage(db).close()
        modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in tmp_path.iterdir() if not p.name.endswith(".lock")}
        conn.close()
    finally:
        os.umask(previous)
    assert modes == {name: "0o600" for name in ("s.db", "s.db-wal", "s.db-shm")}


def test_rename_moves_the_row_byte_for_byte(store: SQLiteStorage, db: Path) -> None:
    """rename moves a row, unreadable too, with its value's bytes as they are, replacing a row at the new key."""
    store.set("bad", {"v": 1})
    store.set("new", {"v": 0})
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute("UPDATE sessions SET value = ? WHERE key = ?", (b"{not json", b"bad"))
        assert store.rename("bad", "new")
        assert conn.execute("SELECT key, value FROM sessions").fetchall() == [(b"new", b"{not json")]
    finally:
        conn.close()
    with pytest.raises(CorruptRecordError):
        store.get("new")
    assert not store.rename("bad", "x") and not store.has("x")
    store.set("\udc80", {"s": 1})
    assert store.rename("\udc80", "same") and store.rename("same", "same") and store.get("same") == {"s": 1}


def test_repr_and_identity(tmp_path: Path, db: Path) -> None:
    """repr names the file and table; one table of one file (through a symlink too) is one store, locked in one place."""
    (tmp_path / "link.db").symlink_to(db)
    storage, same, other = SQLiteStorage(db), SQLiteStorage(tmp_path / "link.db"), SQLiteStorage(db, table="other")
    try:
        assert repr(storage) == f"SQLiteStorage({str(db)!r}, table='sessions')"
        assert same.identity() == storage.identity() != other.identity()
        assert same._lock.path == storage._lock.path  # and they lock in one place
    finally:
        for s in (storage, same, other):
            s.close()
