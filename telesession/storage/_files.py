"""What the on-disk storages share: key -> file name, one lock file per store, atomic writes, leases."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import re
import stat
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import CorruptRecordError, StorageError
from .base import JSONValue, Lease, SessionStorage

try:
    import fcntl
except ImportError:  # Windows: no POSIX locks (see LockFile._hold_windows)
    fcntl = None  # type: ignore[assignment]

# Longest name we produce, well under the 255-byte limit of common file systems, leaving room
# for suffixes such as ".json" and a temp file's pid and random tail.
_MAX_NAME = 180
_SAFE = re.compile(r"[a-z0-9_-]")
_HASHED_PREFIX = "~"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def key_filename(key: str) -> str:
    """A file name that stands for ``key`` and for no other key.

    Lower-case letters, digits, ``_`` and ``-`` are kept; every other character (upper case
    too, so that names stay distinct on case-insensitive file systems; ``.`` and ``/`` too, so
    that no name is ``..``, starts with ``.`` or holds a separator) becomes ``%XX`` per UTF-8
    byte. A name longer than ``_MAX_NAME`` (or empty) becomes ``~`` and the SHA-256 of the key:
    ``~`` never appears in an escaped name, so the two kinds cannot meet.
    """
    name = "".join(c if _SAFE.fullmatch(c) else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass")) for c in key)
    if len(name) > _MAX_NAME or not name:  # "" would make ".json", a hidden name
        return _HASHED_PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return name


def filename_key(name: str) -> str | None:
    """The key an escaped file name stands for, or ``None`` for a hashed name (read the file)."""
    if name.startswith(_HASHED_PREFIX):
        return None
    raw = bytearray()
    i = 0
    while i < len(name):
        if name[i] == "%":
            raw.append(int(name[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(name[i].encode("ascii"))
            i += 1
    return raw.decode("utf-8", "surrogatepass")


# -- cross-process locks: one lock file per store ------------------------------------------------


class LockFile:
    """Holds keys against other processes through ONE lock file, however many keys there are.

    A key is a one-byte POSIX record lock (``fcntl.lockf``) at an offset hashed from the key
    (63 bits of BLAKE2b, with ``namespace`` mixed in): the file stays empty, nothing is created
    per key, and a deleted session leaves nothing behind. A hold and its release cost ~2.5 us
    (0.6 us of it the two system calls; a per-key ``flock`` file measured 5.6 us, filelock ~90);
    a wait happens in the kernel, without the GIL. The OS drops a process's locks when it dies,
    so a killed process never leaves a key locked.

    POSIX record locks belong to the process, not to the descriptor, and closing ANY descriptor
    of the file drops all of them. So each process keeps one descriptor per lock file, shared by
    every ``LockFile`` on it (a registry keyed by the file's real path), closed only when no
    ``LockFile`` uses it and nothing is held; and two holds of one offset in one process (two
    keys whose hashes meet, a 2**-63 chance) share the OS lock, counted, so that only the last
    release unlocks. This class excludes processes, not threads: the engine serializes a key
    inside its process before it locks. Locks are not inherited by ``fork()``: a child starts
    with none and opens its own descriptor. Any OS error raises ``StorageError`` naming the key
    and the lock file.

    On Windows (no ``fcntl``), one ``filelock.FileLock`` per key in ``<lock file>s/`` (files that
    stay after release).
    """

    def __init__(self, path: Path, namespace: str = ""):
        self.path = path
        self._salt = namespace.encode("utf-8") + b"\x00" if namespace else b""
        self._shared: _Shared | None = None
        self._detach: weakref.finalize[[], LockFile] | None = None

    def offset(self, key: str) -> int:
        """The byte of the lock file that stands for ``key``."""
        digest = hashlib.blake2b(self._salt + key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "big") >> 1  # lockf takes a signed 64-bit offset

    def hold(self, key: str, *, blocking: bool = True) -> Callable[[], None] | None:
        """Hold ``key``; returns the function that releases the hold (call it once, from any thread).

        ``blocking=False`` returns ``None`` instead of waiting when another process holds the key.
        """
        if fcntl is None:
            return self._hold_windows(key, blocking)
        offset = self.offset(key)
        try:
            shared = self._shared
            if shared is None or shared.pid != os.getpid():
                shared = self._attach()
            if not shared.lock(offset, blocking):
                return None
        except OSError as e:
            raise self._error(key, e) from e
        return functools.partial(self._release, shared, key, offset)

    def _release(self, shared: _Shared, key: str, offset: int) -> None:
        try:
            shared.unlock(offset)
        except OSError as e:
            raise self._error(key, e) from e

    def _attach(self) -> _Shared:
        # First use, or first use in a forked child (whose inherited registry is stale).
        with _registry_lock:
            if self._detach is not None:
                self._detach.detach()
            self._shared = shared = _Shared.attach(os.path.realpath(self.path))
            # A LockFile dropped without close() still lets go of the descriptor.
            self._detach = weakref.finalize(self, shared.detach)
            self._detach.atexit = False
        return shared

    def close(self) -> None:
        """Stop using the lock file; the descriptor closes once nothing else uses it or holds a key."""
        detach, self._detach, self._shared = self._detach, None, None
        if detach is not None:
            detach()

    def _error(self, key: str, e: OSError) -> StorageError:
        return StorageError(f"cannot lock session {key!r}: {self.path}: {e}", key=key, location=str(self.path), original_error=e)

    def _hold_windows(self, key: str, blocking: bool) -> Callable[[], None] | None:
        from filelock import FileLock, Timeout

        path = self.path.with_name(self.path.name + "s") / (key_filename(key) + ".lock")
        try:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            # thread_local=False: a hold may be released by another thread. poll_interval:
            # filelock polls, and its default of 50 ms starves waiters for up to ~0.5 s.
            lock = FileLock(path, mode=0o600, thread_local=False)
            lock.acquire(poll_interval=0.001, blocking=blocking)
        except Timeout:
            return None
        except OSError as e:
            raise self._error(key, e) from e
        return lock.release

    def __repr__(self) -> str:
        return f"LockFile({str(self.path)!r})"


_registry: dict[str, _Shared] = {}
# Re-entrant, as is each _Shared's mutex: a LockFile dropped without close() detaches from a
# weakref finalizer, which the garbage collector may run in any thread at any allocation,
# inside a critical section too.
_registry_lock = threading.RLock()


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.RLock()  # another thread may have held it at fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Shared:
    """This process's one descriptor on one lock file, and which offsets it holds, how many times.

    ``held`` counts holds per offset; ``pending`` names offsets a thread is waiting for in the
    kernel (a second thread wanting one waits here instead: were both in ``lockf``, the second
    would return at once, the process owning the lock already, and could count itself in after
    the first had unlocked). ``users`` counts the ``LockFile`` objects attached.
    """

    __slots__ = ("path", "pid", "fd", "mutex", "changed", "held", "pending", "users", "closed")

    def __init__(self, path: str):
        self.path = path
        self.pid = os.getpid()
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | _CLOEXEC | _NOFOLLOW, 0o600)
        self.mutex = threading.RLock()
        self.changed = threading.Condition(self.mutex)  # a wait in the kernel ended
        self.held: dict[int, int] = {}
        self.pending: set[int] = set()
        self.users = 0
        self.closed = False

    @classmethod
    def attach(cls, path: str) -> _Shared:
        """The shared descriptor on ``path``, opened if this process has none; called under ``_registry_lock``."""
        shared = _registry.get(path)
        if shared is not None and shared.pid == os.getpid():
            with shared.mutex:
                if not shared.closed:
                    shared.users += 1
                    return shared
        # None yet, or one inherited through fork(): its locks are the parent's, not ours. The
        # inherited descriptor is left open, never closed: after fork() its number may already
        # name another file (a daemonizer closes every descriptor and opens others).
        shared = _registry[path] = cls(path)
        shared.users = 1
        return shared

    def detach(self) -> None:
        if self.pid != os.getpid():
            return
        with self.mutex:
            self.users -= 1
        self._close_if_idle()

    def lock(self, offset: int, blocking: bool) -> bool:
        with self.mutex:
            count = self.held.get(offset)
            if count:
                self.held[offset] = count + 1
                return True
            if offset not in self.pending:
                try:  # the common case, nobody holding it: one section, one system call
                    fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                else:
                    self.held[offset] = 1
                    return True
            if not blocking:
                return False
        return self._wait(offset)

    def _wait(self, offset: int) -> bool:
        """Wait for ``offset``: in the kernel, or behind the thread of this process already waiting there."""
        with self.mutex:
            while offset in self.pending:
                self.changed.wait()
            count = self.held.get(offset)
            if count:  # the thread we waited behind got it: share it
                self.held[offset] = count + 1
                return True
            self.pending.add(offset)
        got = False
        try:
            got = self._lockf_waiting(offset)
        finally:
            with self.mutex:
                if got:
                    self.held[offset] = 1
                else:
                    # Interrupted (KeyboardInterrupt) maybe just after the kernel granted it: let
                    # go of a lock nobody counts. Unlocking a byte not held does nothing.
                    with contextlib.suppress(OSError):
                        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, offset)
                self.pending.discard(offset)
                self.changed.notify_all()
        return got

    def _lockf_waiting(self, offset: int) -> bool:
        delay = 0.001
        while True:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, offset)
                return True
            except OSError as e:
                if e.errno != errno.EDEADLK:
                    raise
            # EDEADLK: the kernel sees process A wait for B while B waits for A, but it only
            # knows processes, not threads: one thread of A holding key 1 while another waits
            # for key 2, and the same in B the other way round, looks like a deadlock and is
            # not (measured here). It ends when either holder releases: wait and ask again.
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def unlock(self, offset: int) -> None:
        if self.pid != os.getpid():
            return  # taken before fork(): the child never held it
        with self.mutex:
            count = self.held.get(offset, 0)
            if count > 1:
                self.held[offset] = count - 1
                return
            if not count:
                return
            # Under the mutex: were another thread to lock this offset before we unlock, its
            # lockf would return at once (the process holds the byte) and our unlock would then
            # take the byte from under it. Counted until unlocked: nothing closes the descriptor
            # under us meanwhile.
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, offset)
            del self.held[offset]
            if self.users:
                return  # still in use: nothing to close
        self._close_if_idle()

    def _close_if_idle(self) -> None:
        with self.mutex:
            if self.users > 0 or self.held or self.pending or self.closed:
                return
            self.closed = True
            os.close(self.fd)  # nothing held: closing drops nothing
        with _registry_lock:
            if _registry.get(self.path) is self:
                del _registry[self.path]


class HeldLease(Lease):
    """The lease of a storage that holds keys with a ``LockFile``: ``set``/``delete``, then the release."""

    __slots__ = ("_storage", "_key", "_release")

    def __init__(
        self,
        storage: SessionStorage,
        key: str,
        release: Callable[[], None],
        value: JSONValue | None,
        error: CorruptRecordError | None = None,
    ):
        super().__init__(value, error)
        self._storage, self._key = storage, key
        self._release: Callable[[], None] | None = release

    def _ended(self) -> StorageError:
        return StorageError(f"session {self._key!r}: this lease has ended; nothing was written", key=self._key)

    def save(self, value: JSONValue, *, ttl: float | None = None) -> None:
        """Store ``value`` and release (``ttl`` is ignored: these storages keep records until deleted)."""
        if self._release is None:
            raise self._ended()
        try:
            self._storage.set(self._key, value)
        finally:
            self.release()

    def delete(self) -> None:
        if self._release is None:
            raise self._ended()
        try:
            self._storage.delete(self._key)
        finally:
            self.release()

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


def acquire_with(lock_file: LockFile, storage: SessionStorage, key: str, blocking: bool) -> HeldLease | None:
    """``storage.acquire`` for a storage whose keys ``lock_file`` holds: the hold, then ``get`` under it
    (an unreadable record comes back as the lease's ``error``, the hold kept)."""
    release = lock_file.hold(key, blocking=blocking)
    if release is None:
        return None
    try:
        value, error = storage.get(key), None
    except CorruptRecordError as e:
        value, error = None, e
    except BaseException:
        release()
        raise
    return HeldLease(storage, key, release, value, error)


# -- record files ---------------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: a temp file, fsync, rename. Readers see old or new, never torn.

    The file is created readable by the owner only. A process killed mid-write leaves at most a
    ``.<name>.<pid>.<random>.tmp`` next to the record, never a partial record; the writer holds
    an ``flock`` on it while it lives, which is how ``remove_stale_temps`` tells the two apart.
    """
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
        if fcntl is None:
            break  # Windows: an open file can't be removed, which protects it instead
        try:
            # Waits only while a cleaner that found the file first removes it; then the file has
            # no name left (st_nlink 0) and we start over under another name.
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink:
                break
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)  # after the rename: the flock stays until the name is gone


def remove_stale_temps(directory: Path, suffix: str) -> int:
    """Remove the temp files that writers killed mid-write left in ``directory``; how many went.

    Only temp files of records (``.<name><suffix>.<pid>.<hex>.tmp``) whose ``flock`` can be
    taken without waiting: a live writer holds its own from creation to rename. Why not compare
    the pid in the name with the live processes: pids are per pid namespace (a writer in another
    container sharing the directory has a pid that here is nobody's, or someone else's) and are
    reused (a dead writer's pid soon names another process, and its file would never go), while
    an flock sits on the file itself, seen the same from everywhere. Temp files of earlier
    versions, which took no flock, count as stale: don't run those writers at the same time.
    """
    pattern = re.compile(r"\..+" + re.escape(suffix) + r"\.\d+\.[0-9a-f]+\.tmp")
    with os.scandir(directory) as entries:
        names = [e.name for e in entries if e.name.startswith(".") and e.name.endswith(".tmp") and pattern.fullmatch(e.name)]
    removed = 0
    for name in names:
        path = directory / name
        if fcntl is None:  # Windows: a file a live writer has open can't be removed
            with contextlib.suppress(OSError):
                os.unlink(path)
                removed += 1
            continue
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
        except OSError:
            continue  # gone meanwhile (renamed into place), or not a plain file: not ours
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer's
            # Removed while we hold the flock, so a writer that created it and has not locked it
            # yet finds it nameless once it does, and starts over (see write_atomic).
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed += 1
        finally:
            os.close(fd)
    return removed


def read_regular(path: Path) -> bytes | None:
    """The bytes of the regular file at ``path``, ``None`` when nothing is there.

    Never blocks and never follows a symbolic link: anything but a regular file (a FIFO, a
    directory, a device, a socket, a symlink) raises ``NotRegularFile``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        # ELOOP for a symlink on Linux (EMLINK on FreeBSD), ENXIO for a socket: ask what is there.
        try:
            kind = _kind(os.lstat(path).st_mode)
        except OSError:
            raise e from None
        if kind:
            raise NotRegularFile(kind) from None
        raise
    try:
        info = os.fstat(fd)
        kind = _kind(info.st_mode)
        if kind:
            raise NotRegularFile(kind)
        parts, left = [], info.st_size
        while left > 0:  # records are replaced, never written in place: the size holds
            chunk = os.read(fd, left)
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)  # b"" when empty
    finally:
        os.close(fd)


class NotRegularFile(Exception):
    """Something other than a regular file stands where a record belongs; ``kind`` says what."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


def _kind(mode: int) -> str:
    """What a file of ``mode`` is, or ``""`` for a regular file."""
    if stat.S_ISREG(mode):
        return ""
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def list_names(directory: Path, suffix: str) -> Iterator[str]:
    """Names (without ``suffix``) of the visible files in ``directory`` ending in ``suffix``."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith(suffix) and not entry.name.startswith("."):
                yield entry.name[: -len(suffix)]
