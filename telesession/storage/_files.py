"""Key -> file name, per-key cross-process locks, and atomic writes: what the on-disk storages share."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import StorageError

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]
    from filelock import FileLock

# Longest name we produce, well under the 255-byte limit of common file systems, leaving room
# for suffixes such as ".json", ".lock" and a temp file's random tail.
_MAX_NAME = 180
_SAFE = re.compile(r"[a-z0-9_-]")
_HASHED_PREFIX = "~"


def key_filename(key: str) -> str:
    """A file name that stands for ``key`` and for no other key.

    Lower-case letters, digits, ``_`` and ``-`` are kept; every other character (upper case
    too, so that names stay distinct on case-insensitive file systems; ``.`` and ``/`` too, so
    that no name is ``..`` or holds a separator) becomes ``%XX`` per UTF-8 byte. A name longer
    than ``_MAX_NAME`` (or empty) becomes ``~`` and the SHA-256 of the key: ``~`` never appears in an
    escaped name, so the two kinds cannot meet.
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


class KeyLocks:
    """One lock file per key in ``directory``, so that processes sharing it exclude each other.

    The OS drops a process's locks when it dies, so a killed process never leaves a key locked.
    ``flock`` on POSIX; filelock where there is no ``fcntl`` (Windows).
    Lock files stay on disk after release (empty files: an inode each, no data): removing one
    while another process waits on it would let two holders in.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.directory / (key_filename(key) + ".lock")

    def lock(self, key: str) -> contextlib.AbstractContextManager[object]:
        if fcntl is not None:
            return _Flock(self.path(key), key)
        # A fresh lock object per hold, not shared between threads: the middleware already
        # serializes one key inside the process, and thread_local=False lets the hold be
        # released by another thread. poll_interval: filelock polls, and its default of
        # 50 ms starves waiters for up to ~0.5 s.
        return FileLock(self.path(key), mode=0o600, thread_local=False, poll_interval=0.001)


class _Flock:
    """An exclusive ``flock`` on a lock file, held from ``__enter__`` to ``__exit__`` (on any thread).

    Why not filelock here: it measured ~140 us per hold (a mkdir, two opens, two stats, all in
    Python) against ~1 us for this, and it polls while contended where ``flock`` waits in the
    kernel, without the GIL. Closing the descriptor releases the lock; the OS does the same
    when the process dies. A child forked while the lock is held keeps it until it exits too.
    A lock file that can't be opened or locked raises ``StorageError`` naming the key and the file.
    """

    __slots__ = ("path", "key", "fd")

    def __init__(self, path: Path, key: str):
        self.path = path
        self.key = key
        self.fd = -1

    def __enter__(self) -> _Flock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as e:
            raise self._error(e) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException as e:
            os.close(fd)
            if isinstance(e, OSError):
                raise self._error(e) from e
            raise
        self.fd = fd
        return self

    def _error(self, e: OSError) -> StorageError:
        return StorageError(f"cannot lock session {self.key!r}: {self.path}: {e}", key=self.key, location=str(self.path), original_error=e)

    def __exit__(self, *exc_info: object) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: a temp file, fsync, rename. Readers see old or new, never torn.

    The file is created readable by the owner only. A process killed mid-write leaves at most a
    stray ``.<name>.<pid>.tmp`` next to the record, never a partial record.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def list_names(directory: Path, suffix: str) -> Iterator[str]:
    """Names (without ``suffix``) of the visible files in ``directory`` ending in ``suffix``."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith(suffix) and not entry.name.startswith("."):
                yield entry.name[: -len(suffix)]
