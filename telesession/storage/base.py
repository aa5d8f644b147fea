"""SessionStorage: the small interface every backend implements, and the hold the engine takes on it.

A backend implements four verbs over JSON values (``get``, ``set``, ``delete``, ``clear``) and,
when several processes share it, ``lock``. Everything else has a default built from those:
``has``, ``keys`` (optional), ``rename``, ``acquire`` and the ``a``-prefixed twins that async
code awaits. The built-in backends override the defaults where they can do better (one round
trip instead of three, a lock that can be tried without waiting, a rename that keeps bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from typing import Any, TypeVar

from .._json import dumps
from ..errors import CorruptRecordError

__all__ = ["SessionStorage", "Lease", "AsyncLease", "JSONValue", "dump_json"]

JSONValue = Any
"""A value made only of dict (str keys), list, str, int, float, bool and None."""

_T = TypeVar("_T")


def dump_json(key: str, value: JSONValue) -> bytes:
    """``value`` as JSON bytes, for backends; what JSON can't hold raises ``EncodeError`` naming ``key`` and the path."""
    return dumps(value, key=key)


class SessionStorage(ABC):
    """Where sessions live between updates.

    Values are what the engine hands over (a small dict); a backend stores them as JSON and
    returns an equal value from ``get``, never the same object. Any ``str`` is a key.

    Errors: a record that exists but cannot be read raises ``CorruptRecordError`` and stays as
    it is; any other failure raises ``StorageError`` naming the key and where the storage
    looked (``location``); a value JSON can't hold raises ``EncodeError``.
    """

    # The ``a``-twins run the blocking verbs in a thread; a backend that does no I/O says so here.
    blocking_io: bool = True

    @abstractmethod
    def get(self, key: str) -> JSONValue | None:
        """The value stored under ``key``, or ``None`` when there is none."""

    @abstractmethod
    def set(self, key: str, value: JSONValue) -> None:
        """Store ``value`` under ``key``, replacing what was there, all or nothing."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing a key that is not there is not an error."""

    @abstractmethod
    def clear(self) -> None:
        """Remove every stored session. Not meant to race with live updates."""

    def has(self, key: str) -> bool:
        """Whether a value is stored under ``key`` (readable or not, where the backend can tell)."""
        return self.get(key) is not None

    def keys(self) -> Iterator[str]:
        """Every stored key, in no particular order. Optional: the default raises ``NotImplementedError``."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its keys")

    def lock(self, key: str) -> contextlib.AbstractContextManager[object]:
        """A context manager that holds ``key`` exclusively against other processes.

        Override it when several processes share the storage; the default does nothing, which
        is right for a storage that one process uses (the engine excludes its own threads and
        tasks). The engine enters it while it holds the key inside its process, so one process
        never enters it twice for one key at once. Its ``__exit__`` may run on another thread
        than its ``__enter__``, and it must free itself when its process dies.

        A backend that overrides ``acquire`` instead gets a ``lock`` built on it.
        """
        if type(self).acquire is not SessionStorage.acquire:
            return _LeaseLock(self, key)
        return contextlib.nullcontext()

    def rename(self, key: str, new_key: str) -> bool:
        """Move the record at ``key`` to ``new_key`` (replacing what is there); ``False`` when ``key`` holds nothing.

        The caller holds both keys. The default reads, writes and deletes, so an unreadable
        record raises ``CorruptRecordError`` and stays; the built-in backends move the stored
        bytes as they are, readable or not.
        """
        value = self.get(key)
        if value is None:
            return False
        self.set(new_key, value)
        self.delete(key)
        return True

    def acquire(self, key: str, *, blocking: bool = True) -> Lease | None:
        """Hold ``key`` against other processes and read its value under that hold.

        Returns the ``Lease``, which the caller ends with ``save``, ``delete`` or ``release``.
        ``blocking=False`` returns ``None`` instead of waiting when another process holds the
        key; the default (built on ``lock``, which can only wait) always waits. A record that
        exists but can't be read does not end the hold: the lease comes back with ``error`` set
        (the ``CorruptRecordError``) and ``value`` None, so the caller can move it aside while
        it holds the key. Any other error reading releases the hold before it propagates.
        """
        held = self.lock(key)
        held.__enter__()
        try:
            value, error = self.get(key), None
        except CorruptRecordError as e:
            value, error = None, e
        except BaseException as e:
            held.__exit__(type(e), e, e.__traceback__)
            raise
        return _LockLease(self, key, held, value, error)

    def close(self) -> None:
        """Release connections and file handles. The storage is not used afterwards."""

    def identity(self) -> Hashable:
        """What makes two storage objects one store: the engine shares in-process locks between
        storages with equal identities. The default, the object itself, suits any storage whose
        objects never share data; a storage on a path or a server returns where it points.
        """
        return self

    def __enter__(self) -> SessionStorage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- async twins: what async code awaits; by default the verbs above, in a thread --------

    async def _blocking(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        if not self.blocking_io:
            return fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def aget(self, key: str) -> JSONValue | None:
        return await self._blocking(self.get, key)

    async def aset(self, key: str, value: JSONValue) -> None:
        await self._blocking(self.set, key, value)

    async def adelete(self, key: str) -> None:
        await self._blocking(self.delete, key)

    async def ahas(self, key: str) -> bool:
        return await self._blocking(self.has, key)

    async def arename(self, key: str, new_key: str) -> bool:
        return await self._blocking(self.rename, key, new_key)

    async def aclear(self) -> None:
        await self._blocking(self.clear)

    async def akeys(self) -> AsyncIterator[str]:
        """``keys()``, a page at a time from a thread (the loop never waits on the backend)."""
        keys = await self._blocking(self.keys)
        while True:
            page = await self._blocking(_page, keys, 500)
            for key in page:
                yield key
            if len(page) < 500:
                return

    async def aacquire(self, key: str, *, blocking: bool = True) -> AsyncLease | None:
        """``acquire`` for async code. Cancelled while it waits, it releases the hold it then gets."""
        if not self.blocking_io:
            lease = self.acquire(key, blocking=blocking)
            return None if lease is None else _ThreadLease(lease, in_thread=False)
        future = asyncio.get_running_loop().run_in_executor(None, functools.partial(self.acquire, key, blocking=blocking))
        try:
            lease = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The thread goes on waiting; whatever it gets, nobody will use it.
            future.add_done_callback(_release_abandoned)
            raise
        return None if lease is None else _ThreadLease(lease, in_thread=True)

    async def aclose(self) -> None:
        await self._blocking(self.close)


def _page(keys: Iterator[str], size: int) -> list[str]:
    return [key for key, _ in zip(keys, range(size))]


def _release_abandoned(future: asyncio.Future[Lease | None]) -> None:
    if not future.cancelled() and future.exception() is None:
        lease = future.result()
        if lease is not None:
            lease.release()


class Lease:
    """A key held against other processes, and the value stored under it when the hold began.

    Made by ``SessionStorage.acquire``; ended by exactly one of ``save``, ``delete`` or
    ``release``, from any thread. ``save`` and ``delete`` release the hold even when the write
    fails (and then raise); a write that could not be made while the hold was still this
    lease's own (a Redis lease that ran out) is refused with ``StorageError``. ``release`` is
    idempotent.
    """

    __slots__ = ("value", "error")

    def __init__(self, value: JSONValue | None, error: CorruptRecordError | None = None) -> None:
        self.value = value
        self.error = error  # the record exists but could not be read (then value is None)

    def save(self, value: JSONValue, *, ttl: float | None = None) -> None:
        """Store ``value`` and release. ``ttl``: seconds after which a backend that can expire records may drop it."""
        raise NotImplementedError

    def delete(self) -> None:
        """Remove the record and release."""
        raise NotImplementedError

    def release(self) -> None:
        """Release without writing."""
        raise NotImplementedError


class _LockLease(Lease):
    """The default lease: the backend's ``lock`` context manager around ``get``, ``set`` and ``delete``."""

    __slots__ = ("_storage", "_key", "_held")

    def __init__(
        self,
        storage: SessionStorage,
        key: str,
        held: contextlib.AbstractContextManager[object],
        value: JSONValue | None,
        error: CorruptRecordError | None = None,
    ):
        super().__init__(value, error)
        self._storage, self._key = storage, key
        self._held: contextlib.AbstractContextManager[object] | None = held

    def save(self, value: JSONValue, *, ttl: float | None = None) -> None:
        try:
            self._storage.set(self._key, value)
        finally:
            self.release()

    def delete(self) -> None:
        try:
            self._storage.delete(self._key)
        finally:
            self.release()

    def release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.__exit__(None, None, None)


class _LeaseLock:
    """``lock(key)`` of a backend that implements ``acquire``: a lease whose value is not used."""

    __slots__ = ("_storage", "_key", "_lease")

    def __init__(self, storage: SessionStorage, key: str) -> None:
        self._storage, self._key = storage, key
        self._lease: Lease | None = None

    def __enter__(self) -> _LeaseLock:
        self._lease = self._storage.acquire(self._key)
        return self

    def __exit__(self, *exc_info: object) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()


class AsyncLease:
    """A ``Lease`` for async code: ``value``, and ends that are awaited (``save``, ``delete``, ``release``).

    The same contract as ``Lease``. A cancelled ``await`` of an end still completes it: the
    hold is never left taken.
    """

    __slots__ = ("value", "error")

    def __init__(self, value: JSONValue | None, error: CorruptRecordError | None = None) -> None:
        self.value = value
        self.error = error

    async def save(self, value: JSONValue, *, ttl: float | None = None) -> None:
        raise NotImplementedError

    async def delete(self) -> None:
        raise NotImplementedError

    async def release(self) -> None:
        raise NotImplementedError


class _ThreadLease(AsyncLease):
    """An ``AsyncLease`` over a blocking ``Lease``: each end runs in a thread (inline when there is no I/O)."""

    __slots__ = ("_lease", "_in_thread")

    def __init__(self, lease: Lease, in_thread: bool) -> None:
        super().__init__(lease.value, lease.error)
        self._lease, self._in_thread = lease, in_thread

    async def _end(self, fn: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        if not self._in_thread:
            fn(*args, **kwargs)
            return
        future = asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))
        # Shielded: a task cancelled here must not leave the hold taken (the thread finishes it).
        await asyncio.shield(future)

    async def save(self, value: JSONValue, *, ttl: float | None = None) -> None:
        await self._end(self._lease.save, value, ttl=ttl)

    async def delete(self) -> None:
        await self._end(self._lease.delete)

    async def release(self) -> None:
        await self._end(self._lease.release)
