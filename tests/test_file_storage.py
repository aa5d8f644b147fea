"""FileStorage's own promises (names that never escape, owner-only files, atomic writes, crashes) and the one-lock-file locking it shares with SQLiteStorage."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import stat
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import orjson
import pytest

from telesession import CorruptRecordError, FileStorage, SessionStorage, StorageError
from telesession.storage import _files
from telesession.storage._files import LockFile, key_filename, remove_stale_temps
from telesession.storage.base import Lease

from .conftest import STORAGE_KINDS, held_elsewhere, run_processes
from .test_storage_contract import ODD_KEYS

BYTE_HELD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, int(sys.argv[2]))
except OSError:
    print("held")
else:
    print("free")
"""


def byte_is_held(lock_file: Path, offset: int) -> bool:
    """Whether any process holds byte ``offset`` of ``lock_file``, asked from a fresh process (a process never conflicts with itself)."""
    run = subprocess.run([sys.executable, "-c", BYTE_HELD, str(lock_file), str(offset)], capture_output=True, text=True, timeout=60, check=True)
    return run.stdout.strip() == "held"


def leased(storage: SessionStorage, key: str) -> Lease:
    lease = storage.acquire(key)
    assert lease is not None
    return lease


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_every_key_maps_inside_the_directory(tmp_path: Path) -> None:
    """Keys with separators, dots, NUL, emoji or 400 characters stay inside the directory as distinct files."""
    storage = FileStorage(tmp_path / "s")
    names = set()
    for key in ODD_KEYS:
        path = storage.file(key)
        assert path.parent == storage.path and len(path.name.encode()) < 255
        names.add(path.name)
        storage.set(key, {"k": key})
    assert len(names) == len(ODD_KEYS)
    assert {p.name for p in storage.path.iterdir() if p.suffix == ".json"} == names
    assert not (tmp_path / "x").exists()


def test_names_are_readable_for_ordinary_keys() -> None:
    """Chat and user keys keep readable file names; upper case is escaped for case-insensitive disks."""
    assert key_filename("-100123") == "-100123"
    assert key_filename("user:42") == "user%3A42"
    assert key_filename("A") != key_filename("a")


def test_files_are_private(tmp_path: Path) -> None:
    """A created directory is 0700 and every record 0600."""
    storage = FileStorage(tmp_path / "s")
    storage.set("k", {"a": 1})
    assert stat.S_IMODE(storage.path.stat().st_mode) == 0o700
    assert stat.S_IMODE(storage.file("k").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b'{"key": "other", "value": {}}', b'{"value": {}}', b"\xff\xfe"],
    ids=["empty", "torn", "list", "other key", "no key", "binary"],
)
def test_unreadable_record_is_reported_with_key_and_path(tmp_path: Path, content: bytes) -> None:
    """A record that can't be parsed raises CorruptRecordError naming key and path, and stays."""
    storage = FileStorage(tmp_path)
    storage.file("k").write_bytes(content)
    with pytest.raises(CorruptRecordError) as info:
        storage.get("k")
    assert info.value.key == "k" and info.value.location == str(storage.file("k"))
    assert "'k'" in str(info.value) and str(storage.file("k")) in str(info.value)
    assert storage.file("k").read_bytes() == content


def test_unusable_directory_is_a_clear_error(tmp_path: Path) -> None:
    """A path that is a file cannot hold sessions: StorageError names it."""
    (tmp_path / "f").write_text("x")
    with pytest.raises(StorageError, match="f"):
        FileStorage(tmp_path / "f")


def _writer(directory: str, started: Any) -> None:
    storage = FileStorage(directory)
    i = 0
    while True:
        i += 1
        for key in ("a", "b", "c"):
            # large enough that a write takes more than one syscall's worth of time
            storage.set(key, {"i": i, "pad": "x" * (i % 7 * 20000)})
        started.set()


def test_kill_9_during_writes_leaves_every_record_whole(tmp_path: Path) -> None:
    """A writer killed at random moments leaves each record old or new, never torn."""
    ctx = multiprocessing.get_context("spawn")
    for round_ in range(8):
        started = ctx.Event()
        proc = ctx.Process(target=_writer, args=(str(tmp_path), started))
        proc.start()
        assert started.wait(60)
        time.sleep(0.01 + round_ * 0.037)  # kill at a different point of the write loop each round
        proc.kill()  # SIGKILL
        proc.join()
        storage = FileStorage(tmp_path)
        for key in ("a", "b", "c"):
            value = storage.get(key)
            assert value is not None and value["pad"] == "x" * (value["i"] % 7 * 20000)
        assert temp_files(tmp_path) == []  # what the killed writer left was removed by FileStorage()


KILLED_HOLDER = """
import sys, time
from pathlib import Path
from tests.conftest import STORAGE_KINDS
storage = STORAGE_KINDS[sys.argv[1]](Path(sys.argv[2]))
lease = storage.acquire("k")
print("locked", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_a_killed_process_never_leaves_a_key_locked(kind: str, tmp_path: Path) -> None:
    """The OS frees the key of a process killed (SIGKILL) while it holds it."""
    root = Path(__file__).resolve().parent.parent
    with subprocess.Popen([sys.executable, "-c", KILLED_HOLDER, kind, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=root) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        assert held_elsewhere(kind, tmp_path, "k")
        proc.kill()
    assert not held_elsewhere(kind, tmp_path, "k")


def test_long_keys_are_listed_by_the_key_inside_the_file(tmp_path: Path) -> None:
    """A key too long for a file name is stored under its hash and still listed as itself."""
    storage = FileStorage(tmp_path)
    key = "é" * 300
    storage.set(key, {"a": 1})
    assert storage.file(key).name.startswith("~")
    assert list(storage.keys()) == [key]
    assert orjson.loads(storage.file(key).read_bytes())["key"] == key


def test_unusable_lock_file_is_a_storage_error(tmp_path: Path) -> None:
    """A lock file that can't be opened raises StorageError naming the key and the file."""
    with STORAGE_KINDS["file"](tmp_path) as storage:
        path = storage._lock.path  # type: ignore[attr-defined]
        path.mkdir()  # a directory where the lock file belongs
        with pytest.raises(StorageError) as info:
            storage.acquire("k")
        assert info.value.key == "k" and info.value.location == str(path)
        assert "'k'" in str(info.value) and str(path) in str(info.value)


def test_unusable_sqlite_lock_file_is_a_storage_error_at_construction(tmp_path: Path) -> None:
    """SQLiteStorage opens its lock file to set the database up: one it can't open is refused there, named."""
    path = tmp_path / "sessions.db-telesession.lock"
    path.mkdir()  # a directory where the lock file belongs
    with pytest.raises(StorageError) as info:
        STORAGE_KINDS["sqlite"](tmp_path)
    assert info.value.location == str(path)
    assert str(path) in str(info.value) and str(tmp_path / "sessions.db") in str(info.value)
    assert "\x00" not in str(info.value)  # not the internal key the setup holds


# -- one lock file per store ----------------------------------------------------------------------


def test_lock_files_do_not_pile_up(tmp_path: Path) -> None:
    """300 sessions leased, saved and deleted leave one empty, private lock file and nothing else."""
    storage = FileStorage(tmp_path / "s")
    for i in range(300):
        leased(storage, f"chat:{i}").save({"i": i})
    assert len(list(storage.keys())) == 300
    for i in range(300):
        leased(storage, f"chat:{i}").delete()
    assert os.listdir(storage.path) == [".lock"]
    info = (storage.path / ".lock").stat()
    assert info.st_size == 0 and stat.S_IMODE(info.st_mode) == 0o600


def _increment(kind: str, directory: str, times: int, start: Any) -> None:
    storage = STORAGE_KINDS[kind](Path(directory))
    start.wait(60)  # both at once: spawning alone takes longer than the increments
    for _ in range(times):
        lease = leased(storage, "counter")
        value = lease.value or {"n": 0}
        lease.save({"n": value["n"] + 1})
    storage.close()


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_processes_lose_no_increment(kind: str, tmp_path: Path) -> None:
    """2 processes x 500 leased read-modify-writes of one key, excluded through the one lock file: exactly 1000."""
    start = multiprocessing.get_context("spawn").Barrier(2)
    run_processes(_increment, [(kind, str(tmp_path), 500, start)] * 2)
    with STORAGE_KINDS[kind](tmp_path) as storage:
        assert storage.get("counter") == {"n": 1000}


def _threaded_increments(kind: str, directory: str, times: int, start: Any) -> None:
    storage = STORAGE_KINDS[kind](Path(directory))
    in_process = {key: threading.Lock() for key in "abc"}  # what the engine does before acquire

    def work(seed: int) -> None:
        for i in range(times):
            key = "abc"[(seed + i * 7) % 3]
            with in_process[key]:
                lease = storage.acquire(key, blocking=i % 2 == 0)
                while lease is None:  # held by another process: try again, as a parked update would
                    time.sleep(0.0005)
                    lease = storage.acquire(key, blocking=False)
                value = lease.value or {"n": 0}
                lease.save({"n": value["n"] + 1})

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    start.wait(60)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    storage.close()


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_threads_of_processes_lose_no_increment(kind: str, tmp_path: Path) -> None:
    """3 processes x 4 threads x 100 increments over 3 keys, waiting and trying without waiting: none lost."""
    start = multiprocessing.get_context("spawn").Barrier(3)
    run_processes(_threaded_increments, [(kind, str(tmp_path), 100, start)] * 3)
    with STORAGE_KINDS[kind](tmp_path) as storage:
        assert sum((storage.get(key) or {"n": 0})["n"] for key in "abc") == 1200


def _cross_wait(kind: str, directory: str, mine: str, other: str, barrier: Any) -> None:
    storage = STORAGE_KINDS[kind](Path(directory))
    lease = leased(storage, mine)
    barrier.wait(60)
    failures: list[BaseException] = []

    def wait_for_other() -> None:
        try:
            leased(storage, other).release()
        except BaseException as e:
            failures.append(e)

    waiter = threading.Thread(target=wait_for_other)
    waiter.start()
    time.sleep(0.5)  # both waiters blocked, each on the other process
    lease.release()
    waiter.join(30)
    assert not waiter.is_alive() and not failures, failures


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_waits_that_only_look_like_a_deadlock_succeed(kind: str, tmp_path: Path) -> None:
    """Process A holds a and waits for b in another thread, B the other way round: the kernel says EDEADLK, both still get their key."""
    barrier = multiprocessing.get_context("spawn").Barrier(2)
    run_processes(_cross_wait, [(kind, str(tmp_path), "a", "b", barrier), (kind, str(tmp_path), "b", "a", barrier)])


def test_colliding_keys_share_the_byte_until_the_last_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two keys hashed to one byte both hold it in one process; the first release leaves it held."""
    monkeypatch.setattr(LockFile, "offset", lambda self, key: 12345)
    storage = FileStorage(tmp_path)
    a = leased(storage, "a")
    b = storage.acquire("b", blocking=False)  # the process holds the byte already: no wait on itself
    assert b is not None
    lock_file = storage._lock.path
    assert byte_is_held(lock_file, 12345)
    a.release()
    assert byte_is_held(lock_file, 12345)
    b.release()
    assert not byte_is_held(lock_file, 12345)


def test_threads_waiting_for_one_byte_wait_in_turn_and_share_it(tmp_path: Path) -> None:
    """While another process holds a key, two threads of this one wait (one in the kernel, one behind it) and both get it when it is freed."""
    root = Path(__file__).resolve().parent.parent
    storage = STORAGE_KINDS["file"](tmp_path)
    leases: list[Lease] = []
    with subprocess.Popen([sys.executable, "-c", KILLED_HOLDER, "file", str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=root) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        waiters = [threading.Thread(target=lambda: leases.append(leased(storage, "k"))) for _ in range(2)]
        for waiter in waiters:
            waiter.start()
        time.sleep(0.3)
        assert leases == [] and storage.acquire("k", blocking=False) is None
        proc.kill()
    for waiter in waiters:
        waiter.join(10)
    assert len(leases) == 2
    lock_file, offset = storage._lock.path, storage._lock.offset("k")  # type: ignore[attr-defined]
    leases[0].release()
    assert byte_is_held(lock_file, offset)
    leases[1].release()
    assert not byte_is_held(lock_file, offset)


def test_storages_on_one_directory_share_one_descriptor(tmp_path: Path) -> None:
    """Closing one of two storages on a directory keeps the other's holds (closing any descriptor would drop them all)."""
    first, second = FileStorage(tmp_path), FileStorage(tmp_path)
    lease = leased(first, "k")
    leased(second, "x").release()
    second.close()
    assert byte_is_held(first._lock.path, first._lock.offset("k"))
    first.close()  # a lease outlives its storage's close; the descriptor closes after it
    assert byte_is_held(first._lock.path, first._lock.offset("k"))
    lease.release()
    assert not byte_is_held(first._lock.path, first._lock.offset("k"))
    assert os.path.realpath(first._lock.path) not in _files._registry


def test_a_forked_child_holds_nothing_of_its_parent(tmp_path: Path) -> None:
    """After fork() the parent's held key is another process's to the child, and the child can't release it."""
    storage = FileStorage(tmp_path / "sessions")
    lease = leased(storage, "k")
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() while threads live
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            held = storage.acquire("k", blocking=False) is None
            lease.release()  # inherited: the child never held it, so this frees nothing
            other = storage.acquire("other", blocking=False)
            result = f"{held} {other is not None}"
            if other is not None:
                other.release()
        except BaseException as e:
            result = repr(e)
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        result = pipe.read().decode()
    os.waitpid(pid, 0)
    assert result == "True True"
    assert held_elsewhere("file", tmp_path, "k")
    lease.release()
    assert not held_elsewhere("file", tmp_path, "k")


# -- temp files of interrupted writes -----------------------------------------------------------

STUCK_WRITER = """
import os, sys, time
from telesession import FileStorage
def stuck(fd):
    print("writing", flush=True)
    time.sleep(60)
os.fsync = stuck  # the write stops between creating the temp file and renaming it
FileStorage(sys.argv[1]).set(sys.argv[2], {"a": 1})
"""


def stuck_writer(directory: Path, key: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", STUCK_WRITER, str(directory), key], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    return proc


def kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def test_temp_files_of_killed_writers_go_and_a_live_writers_stays(tmp_path: Path) -> None:
    """FileStorage() removes temp files whose writer was killed, never one whose writer lives (holds its flock)."""
    directory = tmp_path / "s"
    FileStorage(directory)
    # All started before any dies: each writer's own FileStorage() would clean up the dead.
    writers = {key: stuck_writer(directory, key) for key in ("dead1", "dead2", "live")}
    try:
        kill(writers["dead1"])
        kill(writers["dead2"])
        assert len(temp_files(directory)) == 3
        FileStorage(directory)
        assert [name.split(".")[1] for name in temp_files(directory)] == ["live"]
    finally:
        for proc in writers.values():
            kill(proc)
    FileStorage(directory)
    assert temp_files(directory) == []


def test_a_writer_whose_new_temp_file_a_cleaner_took_starts_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cleaner that removes a temp file between its creation and the writer's flock makes the writer retry, not fail."""
    storage = FileStorage(tmp_path)
    real_flock = fcntl.flock
    removed: list[int] = []

    def flock(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX and not removed:  # the writer, about to lock its new temp file
            removed.append(remove_stale_temps(tmp_path, ".json"))
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    storage.set("k", {"a": 1})
    assert removed == [1]
    assert storage.get("k") == {"a": 1} and temp_files(tmp_path) == []


# -- what stands where a record belongs -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["a FIFO", "a directory", "a symbolic link"])
def test_something_else_than_a_file_is_a_corrupt_record_at_once(tmp_path: Path, kind: str) -> None:
    """A FIFO, a directory or a symlink (never followed) where a record belongs raises CorruptRecordError without blocking."""
    storage = FileStorage(tmp_path / "s")
    path = storage.file("k")
    if kind == "a FIFO":
        os.mkfifo(path)
    elif kind == "a directory":
        path.mkdir()
    else:
        elsewhere = tmp_path / "elsewhere.json"
        elsewhere.write_bytes(b'{"key":"k","value":{"a":1}}')  # a valid record: following the link would read it
        path.symlink_to(elsewhere)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            storage.get("k")
        except BaseException as e:
            errors.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(1)
    assert not reader.is_alive(), "get() blocked"
    assert len(errors) == 1 and isinstance(errors[0], CorruptRecordError), errors
    error = errors[0]
    assert error.key == "k" and error.location == str(path) and kind in str(error) and str(path) in str(error)
    lease = storage.acquire("k")  # the hold is kept, the unreadable record handed back as the lease's error
    assert lease is not None and lease.value is None and isinstance(lease.error, CorruptRecordError)
    assert byte_is_held(storage._lock.path, storage._lock.offset("k"))
    lease.release()
    assert not byte_is_held(storage._lock.path, storage._lock.offset("k"))
    assert storage.has("k")


# -- keys, renames, repr --------------------------------------------------------------------------


def test_keys_with_lone_surrogates_and_records_of_earlier_versions(tmp_path: Path) -> None:
    """Keys JSON can't hold are stored as hex and listed, short or hashed; records written by earlier versions still read."""
    storage = FileStorage(tmp_path)
    short, long_ = "\udc80", "\ud800" * 100
    storage.set(short, {"s": 1})
    storage.set(long_, {"l": 1})
    assert storage.get(short) == {"s": 1} and storage.get(long_) == {"l": 1}
    assert storage.file(long_).name.startswith("~")
    assert orjson.loads(storage.file(long_).read_bytes())["key_hex"] == long_.encode("utf-8", "surrogatepass").hex()
    assert sorted(storage.keys()) == sorted([short, long_])
    storage.file("old").write_bytes(b'{"key":"old","value":{"n":1}}')
    assert storage.get("old") == {"n": 1}


def test_rename_rewrites_the_key_and_keeps_the_value_bytes(tmp_path: Path) -> None:
    """A renamed record names its new key (so keys() lists it, hashed names too); the value's bytes are untouched."""
    storage = FileStorage(tmp_path)
    storage.file("a").write_bytes(b'{"key":"a","value":{"b": 2,   "a": 1}}')
    long_key = "y" * 300
    assert storage.rename("a", long_key)
    assert storage.file(long_key).read_bytes() == b'{"key":"' + long_key.encode() + b'","value":{"b": 2,   "a": 1}}'
    assert list(storage.keys()) == [long_key]
    assert storage.rename(long_key, "z")
    assert list(storage.keys()) == ["z"] and storage.get("z") == {"b": 2, "a": 1}
    storage.file("spaced").write_bytes(b'{"key": "spaced", "value": {"n": 1}}')  # written by hand
    assert storage.rename("spaced", "tidy")
    assert storage.get("tidy") == {"n": 1}
    assert storage.rename("z", "z") and storage.get("z") == {"b": 2, "a": 1}


@pytest.mark.parametrize("content", [b"\xff\xfe not json", b'{"key":"other","value":1}'], ids=["binary", "other key"])
def test_rename_moves_an_unreadable_record_as_it_is(tmp_path: Path, content: bytes) -> None:
    """An unreadable record moves byte for byte and stays unreadable, and nothing is left at the old key."""
    storage = FileStorage(tmp_path)
    storage.file("bad").write_bytes(content)
    storage.set("new", {"replaced": True})
    assert storage.rename("bad", "new")
    assert storage.file("new").read_bytes() == content and not storage.has("bad")
    with pytest.raises(CorruptRecordError):
        storage.get("new")


def test_repr_and_identity(tmp_path: Path) -> None:
    """repr names the directory; a symlinked path is the same store."""
    storage = FileStorage(tmp_path / "s")
    (tmp_path / "link").symlink_to(tmp_path / "s")
    assert repr(storage) == f"FileStorage({str(tmp_path / 's')!r})"
    assert FileStorage(tmp_path / "link").identity() == storage.identity() != FileStorage(tmp_path / "t").identity()
