"""RedisStorage: sessions in Redis, shared by processes on any number of hosts.

The only module of telesession that imports redis-py (``pip install 'telesession[redis]'``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Hashable, Iterator
from typing import Any, Literal, TypeVar

try:
    import redis
    import redis.asyncio
    import redis.asyncio.retry
    from redis.commands.core import AsyncScript, Script
    from redis.exceptions import NoScriptError, RedisError, ResponseError
    from redis.lock import Lock
except ImportError as e:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "telesession.storage.redis needs redis-py, which is not installed: pip install 'telesession[redis]'"
    ) from e

import orjson

from ..errors import CorruptRecordError, StorageError
from .base import AsyncLease, JSONValue, Lease, SessionStorage, dump_json

__all__ = ["RedisStorage"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")
_End = Literal["save", "delete", "release"]

# Two scripts of our own, and why:
# - _ACQUIRE takes the lock and reads the data in one round trip. A non-transactional pipeline
#   (SET NX PX, GET lock, GET data) does the same, but redis-py's Pipeline adds ~15-25 us of
#   Python per execute: on loopback a changed update cost 1.9x a raw GET + SET with it, 1.55x
#   with this script (benchmarks/redis_cycle.py). The lock is ours when SET NX took it or, after
#   a lost reply made redis-py send the script again, already holds our token. The data is read
#   with pcall, so a key of another type comes back as an error value while the lock is known
#   to be ours (and is then released).
# - _FENCED_END saves or deletes only while the lock still holds this lease's token, checked and
#   done atomically on the server, and releases in the same round trip: a holder stalled past
#   its lease (SIGSTOP, a long GIL hold, a partition) must not write over its successor. No
#   redis-py primitive writes on condition of a lock (Lock checks its token only to release or
#   extend); WATCH + MULTI/EXEC would need a round trip to read the lock first. The lock is freed
#   before the write, so a write the server refuses (OOM) still releases it.
# Both name the lock as KEYS[1] and the data as KEYS[2], which share a hash slot (see RedisStorage).
_ACQUIRE = """
if redis.call('set', KEYS[1], ARGV[1], 'nx', 'px', ARGV[2]) or redis.call('get', KEYS[1]) == ARGV[1] then
    return {1, redis.pcall('get', KEYS[2])}
end
return {0}
"""
# ARGV[1] the token, ARGV[2] 'save' (ARGV[3] the value, ARGV[4] its PX in ms, if any) or
# 'delete'. Returns 1 when done, 0 when refused.
_FENCED_END = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('del', KEYS[1])
if ARGV[2] == 'delete' then
    redis.call('del', KEYS[2])
elseif ARGV[4] then
    redis.call('set', KEYS[2], ARGV[3], 'px', ARGV[4])
else
    redis.call('set', KEYS[2], ARGV[3])
end
return 1
"""
# Release and renewal are redis-py's own: the compare-and-delete and compare-and-pexpire that
# Lock.release() and Lock.reacquire() run. (Lock objects themselves don't fit: a lease takes its
# lock with its read, and a Lock's token is set only by its own acquire.)
_RELEASE = Lock.LUA_RELEASE_SCRIPT
_RENEW = Lock.LUA_REACQUIRE_SCRIPT

_GLOB_SPECIAL = frozenset(b"*?[]\\")


def _utf8(text: str) -> bytes:
    # surrogatepass: every Python str is a usable key, lone surrogates included.
    return text.encode("utf-8", "surrogatepass")


def _hash_tag(name: bytes) -> bytes | None:
    """What Redis Cluster hashes of ``name`` when not all of it: the first ``{`` and the next ``}``, if they enclose something."""
    start = name.find(b"{")
    end = name.find(b"}", start + 1) if start >= 0 else -1
    return name[start + 1 : end] if end > start + 1 else None


def _new_token() -> bytes:
    return os.urandom(16).hex().encode()


def _pause(started: float) -> float:
    # Short sleeps: the default 0.1 s of redis-py's Lock gave 100 ms p99 waits.
    return 0.001 if time.monotonic() - started < 0.1 else 0.01


def _run_script(client: redis.Redis, script: Script, keys: list[bytes], args: list[Any]) -> Any:
    """``script(keys=keys, args=args)``, ~5 us faster: Script.__call__ imports and copies on every call."""
    try:
        return client.evalsha(script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return script(keys=keys, args=args)  # loads it into this server, then runs it


async def _arun_script(client: redis.asyncio.Redis, script: AsyncScript, keys: list[bytes], args: list[Any]) -> Any:
    """``_run_script`` for a redis.asyncio client."""
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await script(keys=keys, args=args)


def _describe(client: redis.Redis) -> str:
    """The client's address as a URL, without the password, for error messages."""
    pool = getattr(client, "connection_pool", None)
    kwargs: dict[str, Any] = getattr(pool, "connection_kwargs", {})
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    scheme = "rediss" if issubclass(getattr(pool, "connection_class", object), redis.SSLConnection) else "redis"
    user = f"{kwargs['username']}@" if kwargs.get("username") else ""
    return f"{scheme}://{user}{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


class RedisStorage(SessionStorage):
    """One JSON string per session at ``<prefix>data:<key>``; a held key's lock beside it.

    **Layout.** Keys are stored as UTF-8 (lone surrogates included). The lock of a key is
    ``<prefix>lock:{<h>}<key>``, where ``<h>`` is what Redis Cluster hashes of the data name:
    its hash tag (the first ``{...}``, when it encloses something), else the whole data name.
    The lock so lives in the data's hash slot, which the lease scripts need on Cluster (they
    name both). Where no such ``<h>`` exists the lock is ``<prefix>lock:<key>``:

    - a prefix with a hash tag (``"{bot}:"``): every name of the storage hashes by that tag,
      so ``<prefix>lock:<key>`` is already in the data's slot;
    - a prefix with a ``{`` but no hash tag (``"{}x:"``, ``"{x:"``): no key's lock shares its slot;
    - otherwise, keys without a hash tag of their own whose data name holds a ``}`` (``"a}b"``,
      or every such key when the prefix holds a ``}``): their lock doesn't share its slot.

    On Cluster such a key can't be leased: ``acquire`` fails with ``StorageError`` (``CROSSSLOT``)
    before any handler runs; ``get``/``set``/``delete`` work. On one server (or Sentinel) every
    key works. Records are where earlier versions wrote them; locks are not (a lock lives only
    while held, but processes of an earlier version don't exclude this one's). Locks and
    data names differ at a fixed position (``lock:`` against ``data:``), so no session key
    names a lock and ``keys()``/``clear()`` never see locks. ``clear()`` removes only
    ``<prefix>data:*`` (SCAN, never KEYS); choose prefixes so that no other application's
    prefix starts with ``<prefix>data:`` or ``<prefix>lock:``.

    ``ttl`` (seconds): a session expires that long after its last save (``get`` does not
    refresh it); ``None`` keeps sessions forever.

    **Leases.** ``acquire`` takes the lock (``SET NX PX`` with a random token, ``lock_lease``
    seconds) and reads the value in one round trip; ``save``/``delete`` write and release in
    one more, by a script that acts only while the lock still holds the lease's token: a holder
    stalled past its lease (SIGSTOP, a long GIL hold, a partition) is refused with
    ``StorageError`` instead of writing over its successor. ``release`` is a compare-and-delete;
    when the lock was no longer its own it raises ``StorageError`` too (another process may
    have held the key meanwhile). One daemon thread per storage renews every held lease, sync
    and async, every ``lock_lease / 3`` s, so a slow handler keeps its lock; a dead process
    stops renewing and its lock expires within ``lock_lease``. Waiters retry every 1 ms
    (10 ms after 0.1 s).

    **Async.** The ``a``-twins use a ``redis.asyncio`` client per event loop, made from the
    connection settings of ``client``; it is closed by ``aclose()`` or when ``asyncio.run``
    shuts its loop down. (A client whose pool redis.asyncio can't mirror, such as Sentinel's,
    gets the default twins, which run the blocking client in a thread.)

    Every Redis failure raises ``StorageError`` naming the key and the server (without
    password); a value that is not JSON, or a key of another type, ``CorruptRecordError``.
    A ``client`` you pass stays yours: ``close()`` closes only a client made by ``from_url``
    or by default (``redis.Redis()``: localhost:6379, db 0). redis-py may retry a failed
    command first, as the client's ``retry`` says.
    """

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        prefix: str = "telesession:",
        ttl: float | None = None,
        lock_lease: float = 30.0,
    ):
        if ttl is not None and not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
        if not lock_lease > 0:
            raise ValueError(f"lock_lease must be a positive number of seconds, got {lock_lease!r}")
        self._owns_client = client is None
        self.client: redis.Redis = redis.Redis() if client is None else client
        self.prefix = prefix
        self.ttl = ttl
        self.lock_lease = lock_lease
        self.location = _describe(self.client)
        self._identity = _where(self.client) + (prefix,)
        self._data = _utf8(prefix + "data:")
        self._lock = _utf8(prefix + "lock:")
        # With a "{" in the prefix, the prefix decides the slot of every name (see the docstring).
        self._lock_by_slot = b"{" not in self._data
        self._ttl_ms = None if ttl is None else max(1, round(ttl * 1000))
        self._lease_ms = max(1, round(lock_lease * 1000))
        self._scripts = {name: self.client.register_script(text) for name, text in _SCRIPTS.items()}
        self._async_pool = _async_pool_settings(self.client)
        self._sides: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncSide] = weakref.WeakKeyDictionary()
        self._tasks: set[asyncio.Future[Any]] = set()  # ends that go on after their caller was cancelled
        self._start_process()

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "telesession:", ttl: float | None = None, lock_lease: float = 30.0, **options: Any
    ) -> RedisStorage:
        """A storage on its own client made by ``redis.Redis.from_url(url, **options)``; connects lazily."""
        storage = cls(redis.Redis.from_url(url, **options), prefix=prefix, ttl=ttl, lock_lease=lock_lease)
        storage._owns_client = True
        return storage

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r}, prefix={self.prefix!r})"

    def identity(self) -> Hashable:
        """The server (host and port, or socket path), the db and the prefix."""
        return self._identity

    def _start_process(self) -> None:
        # Called again in a forked child: the parent's holds, mutex and renewer are not ours.
        self._pid = os.getpid()
        self._held: dict[bytes, bytes] = {}  # token -> lock name; by token, so two holds never clash
        self._held_mutex = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _names(self, key: str) -> tuple[bytes, bytes]:
        """The data name and the lock name of ``key`` (see the class docstring)."""
        name = _utf8(key)
        data = self._data + name
        if self._lock_by_slot:
            # No "{" before the key: the data name hashes by the key's own tag, or whole.
            hashed = _hash_tag(name) or (data if b"}" not in data else None)
            if hashed is not None:
                return data, self._lock + b"{" + hashed + b"}" + name
        return data, self._lock + name

    def _failure(self, action: str, key: str | None, e: RedisError) -> StorageError:
        about = f"key {key!r}" if key is not None else "sessions"
        if isinstance(e, ResponseError) and str(e).startswith("WRONGTYPE"):
            return CorruptRecordError(
                f"Redis {self.location}: session {key!r} is not a string: {e}", key=key, location=self.location, original_error=e
            )
        message = f"Redis {self.location}: cannot {action} {about}: {e}"
        return StorageError(message, key=key, location=self.location, original_error=e)

    def _run(self, action: str, key: str | None, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except RedisError as e:
            raise self._failure(action, key, e) from e

    async def _arun(self, action: str, key: str | None, pending: Awaitable[_T]) -> _T:
        try:
            return await pending
        except RedisError as e:
            raise self._failure(action, key, e) from e

    def _decode(self, key: str, data: object) -> JSONValue | None:
        if isinstance(data, RedisError):
            raise self._failure("read", key, data) from data
        if data is None:
            return None
        try:
            return orjson.loads(data)  # type: ignore[arg-type]
        except orjson.JSONDecodeError as e:
            raise CorruptRecordError(
                f"Redis {self.location}: session {key!r} is not valid JSON: {e}", key=key, location=self.location, original_error=e
            ) from e

    # -- the plain verbs ------------------------------------------------------------------------

    def get(self, key: str) -> JSONValue | None:
        """The stored value, or ``None`` (also once its TTL has passed)."""
        return self._decode(key, self._run("read", key, lambda: self.client.get(self._data + _utf8(key))))

    def set(self, key: str, value: JSONValue) -> None:
        """Store ``value`` and restart its TTL. A value JSON cannot hold raises ``EncodeError``."""
        data = dump_json(key, value)
        self._run("write", key, lambda: self.client.set(self._data + _utf8(key), data, px=self._ttl_ms))

    def delete(self, key: str) -> None:
        self._run("delete", key, lambda: self.client.delete(self._data + _utf8(key)))

    def has(self, key: str) -> bool:
        return bool(self._run("read", key, lambda: self.client.exists(self._data + _utf8(key))))

    def _pattern(self) -> bytes:
        # Escape the prefix: it is taken literally, even if it holds glob characters.
        return b"".join(b"\\" + bytes([c]) if c in _GLOB_SPECIAL else bytes([c]) for c in self._data) + b"*"

    def _key_of(self, name: bytes | str) -> str:
        name = _utf8(name) if isinstance(name, str) else name
        return name[len(self._data) :].decode("utf-8", "surrogatepass")

    def keys(self) -> Iterator[str]:
        """Every key under the prefix, via SCAN: keys saved or expiring meanwhile may or may not show."""
        names = self._run("list", None, lambda: self.client.scan_iter(match=self._pattern(), count=1000))
        while True:
            name = self._run("list", None, lambda: next(names, None))
            if name is None:
                return
            yield self._key_of(name)

    def clear(self) -> None:
        """Delete every session under the prefix (SCAN + DEL in batches); locks and other keys stay."""
        batch: list[bytes] = []
        for key in self.keys():
            batch.append(self._data + _utf8(key))
            if len(batch) >= 500:
                self._run("clear", None, lambda: self.client.delete(*batch))
                batch = []
        if batch:
            self._run("clear", None, lambda: self.client.delete(*batch))

    def rename(self, key: str, new_key: str) -> bool:
        """RENAME: the stored bytes move as they are (unreadable ones too), with their TTL; locks stay.

        On Cluster both data names must share a slot (the same hash tag), else ``StorageError``.
        """
        try:
            self.client.rename(self._names(key)[0], self._names(new_key)[0])
        except ResponseError as e:
            if "no such key" in str(e):
                return False
            raise self._failure("rename", key, e) from e
        except RedisError as e:
            raise self._failure("rename", key, e) from e
        return True

    # -- leases ---------------------------------------------------------------------------------

    def _try(self, names: tuple[bytes, bytes], token: bytes) -> tuple[bool, object]:
        """Whether the lock is now ours, and (if so) the data read under it."""
        taken = _run_script(self.client, self._scripts["acquire"], [names[1], names[0]], [token, self._lease_ms])
        return bool(taken[0]), taken[1] if taken[0] else None

    def acquire(self, key: str, *, blocking: bool = True) -> Lease | None:
        """Take the lock and read the value in one round trip (see the class docstring)."""
        names = self._names(key)
        token = _new_token()
        started = time.monotonic()
        while True:
            held, data = self._run("lock", key, lambda: self._try(names, token))
            if held:
                break
            if not blocking:
                return None
            time.sleep(_pause(started))
        self._track(token, names[1])
        try:
            value, error = self._decode(key, data), None
        except CorruptRecordError as e:  # unreadable: handed back with the lock kept (see SessionStorage.acquire)
            value, error = None, e
        except BaseException:
            self._end(token, key, names, "release")
            raise
        return _RedisLease(self, key, names, token, value, error)

    def _end_call(
        self, token: bytes, key: str, names: tuple[bytes, bytes], how: _End, value: JSONValue, ttl: float | None
    ) -> tuple[str, list[bytes], list[bytes | int]]:
        """Which script ends the lease, with its keys and arguments; raises for a value that can't be saved."""
        if how == "release":
            return "release", [names[1]], [token]
        if how == "delete":
            return "fenced", [names[1], names[0]], [token, b"delete"]
        if ttl is not None and not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
        ms = self._ttl_ms if ttl is None else max(1, round(ttl * 1000))
        return "fenced", [names[1], names[0]], [token, b"save", dump_json(key, value), *([] if ms is None else [ms])]

    def _refused(self, key: str, how: _End) -> StorageError:
        if how == "release":
            what = f"the lock on key {key!r} expired before its release; another process may have held it"
        else:
            what = (
                f"the {how} of key {key!r} was refused: its lock expired (lock_lease={self.lock_lease}s) and another "
                "process may have written since"
            )
        return StorageError(f"Redis {self.location}: {what}", key=key, location=self.location)

    def _end(
        self, token: bytes, key: str, names: tuple[bytes, bytes], how: _End, value: JSONValue = None, ttl: float | None = None
    ) -> None:
        self._untrack(token)
        try:
            script, keys, args = self._end_call(token, key, names, how, value, ttl)
        except BaseException:
            self._end(token, key, names, "release")  # a value that can't be saved still frees the key
            raise
        if not self._run(how, key, lambda: _run_script(self.client, self._scripts[script], keys, args)):
            raise self._refused(key, how)

    def _track(self, token: bytes, name: bytes) -> None:
        if self._pid != os.getpid():
            self._start_process()
        with self._held_mutex:
            self._held[token] = name
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew, name=f"telesession-redis-renewer-{id(self):x}", daemon=True)
                self._renewer.start()

    def _untrack(self, token: bytes) -> None:
        with self._held_mutex:
            self._held.pop(token, None)

    def _renew(self) -> None:
        while not self._stop.wait(self.lock_lease / 3):
            with self._held_mutex:
                held = list(self._held.items())
            for token, name in held:
                try:
                    renewed = _run_script(self.client, self._scripts["renew"], [name], [token, self._lease_ms])
                except RedisError as e:
                    logger.warning("telesession: cannot renew the lock %r on Redis %s: %s", name, self.location, e)
                    continue
                if not renewed and token in self._held:
                    logger.warning("telesession: the lock %r on Redis %s expired while held", name, self.location)

    def close(self) -> None:
        """Stop renewing (held locks then expire within their lease) and close a client made here.

        Async clients are closed by ``aclose()`` or with their event loop (see the class docstring).
        """
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(timeout=5)
        if self._owns_client:
            self.client.close()

    # -- async twins: a redis.asyncio client per event loop -------------------------------------

    async def _side(self) -> _AsyncSide | None:
        """The running loop's client and scripts, made on first use; ``None`` when the client can't be mirrored."""
        if self._async_pool is None:
            return None
        loop = asyncio.get_running_loop()
        side = self._sides.get(loop)
        if side is None:
            connection_class, kwargs = self._async_pool
            client = redis.asyncio.Redis.from_pool(redis.asyncio.ConnectionPool(connection_class=connection_class, **kwargs))
            side = self._sides[loop] = _AsyncSide(client, _closed_with_loop(self._sides, loop, client))
            await side.closer.asend(None)
        return side

    async def aget(self, key: str) -> JSONValue | None:
        side = await self._side()
        if side is None:
            return await super().aget(key)
        return self._decode(key, await self._arun("read", key, side.client.get(self._data + _utf8(key))))

    async def aset(self, key: str, value: JSONValue) -> None:
        side = await self._side()
        if side is None:
            return await super().aset(key, value)
        data = dump_json(key, value)
        await self._arun("write", key, side.client.set(self._data + _utf8(key), data, px=self._ttl_ms))

    async def adelete(self, key: str) -> None:
        side = await self._side()
        if side is None:
            return await super().adelete(key)
        await self._arun("delete", key, side.client.delete(self._data + _utf8(key)))

    async def ahas(self, key: str) -> bool:
        side = await self._side()
        if side is None:
            return await super().ahas(key)
        return bool(await self._arun("read", key, side.client.exists(self._data + _utf8(key))))

    async def akeys(self) -> AsyncIterator[str]:
        side = await self._side()
        if side is None:
            async for key in super().akeys():
                yield key
            return
        names = side.client.scan_iter(match=self._pattern(), count=1000)
        while True:
            try:
                name = await self._arun("list", None, names.__anext__())
            except StopAsyncIteration:
                return
            yield self._key_of(name)

    async def aclear(self) -> None:
        side = await self._side()
        if side is None:
            return await super().aclear()
        batch: list[bytes] = []
        async for key in self.akeys():
            batch.append(self._data + _utf8(key))
            if len(batch) >= 500:
                await self._arun("clear", None, side.client.delete(*batch))
                batch = []
        if batch:
            await self._arun("clear", None, side.client.delete(*batch))

    async def arename(self, key: str, new_key: str) -> bool:
        side = await self._side()
        if side is None:
            return await super().arename(key, new_key)
        try:
            await side.client.rename(self._names(key)[0], self._names(new_key)[0])
        except ResponseError as e:
            if "no such key" in str(e):
                return False
            raise self._failure("rename", key, e) from e
        except RedisError as e:
            raise self._failure("rename", key, e) from e
        return True

    async def _atry(self, side: _AsyncSide, key: str, names: tuple[bytes, bytes], token: bytes) -> tuple[bool, object]:
        acquiring = _arun_script(side.client, side.scripts["acquire"], [names[1], names[0]], [token, self._lease_ms])
        taken = await self._arun("lock", key, acquiring)
        return bool(taken[0]), taken[1] if taken[0] else None

    async def aacquire(self, key: str, *, blocking: bool = True) -> AsyncLease | None:
        """``acquire`` for async code. Cancelled while it waits, it releases what its last try took."""
        side = await self._side()
        if side is None:
            return await super().aacquire(key, blocking=blocking)
        names = self._names(key)
        token = _new_token()
        started = time.monotonic()
        while True:
            # Each try runs to its end even if we are cancelled meanwhile: only its reply says
            # whether the server gave us the lock, and then it must be released.
            attempt = self._background(self._atry(side, key, names, token))
            try:
                held, data = await asyncio.shield(attempt)
            except asyncio.CancelledError:
                attempt.add_done_callback(functools.partial(self._abandon, side, key, names, token))
                raise
            if held:
                break
            if not blocking:
                return None
            await asyncio.sleep(_pause(started))
        self._track(token, names[1])
        try:
            value, error = self._decode(key, data), None
        except CorruptRecordError as e:
            value, error = None, e
        except BaseException:
            await self._aend(side, token, key, names, "release")
            raise
        return _AsyncRedisLease(self, side, key, names, token, value, error)

    def _abandon(
        self, side: _AsyncSide, key: str, names: tuple[bytes, bytes], token: bytes, attempt: asyncio.Future[Any]
    ) -> None:
        """The try of a cancelled ``aacquire`` is over: release what it took (or may have taken, if it failed)."""
        if attempt.cancelled():  # the loop is shutting down: a lock it took expires within its lease
            return
        if attempt.exception() is None and not attempt.result()[0]:
            return
        release = self._background(_arun_script(side.client, side.scripts["release"], [names[1]], [token]))
        release.add_done_callback(self._log_failure(f"release the lock on key {key!r}"))

    def _background(self, work: Coroutine[Any, Any, _T]) -> asyncio.Future[_T]:
        """``work`` in a task that stays referenced until it is done, whoever awaits it."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _log_failure(self, what: str) -> Callable[[asyncio.Future[Any]], None]:
        """A done-callback for a task nobody awaits any more: it logs what the task raised."""

        def log(task: asyncio.Future[Any]) -> None:
            if not task.cancelled() and task.exception() is not None:
                logger.warning("telesession: cannot %s on Redis %s: %s", what, self.location, task.exception())

        return log

    async def _afenced(
        self, side: _AsyncSide, key: str, how: _End, script: str, keys: list[bytes], args: list[bytes | int]
    ) -> None:
        if not await self._arun(how, key, _arun_script(side.client, side.scripts[script], keys, args)):
            raise self._refused(key, how)

    async def _aend(
        self,
        side: _AsyncSide,
        token: bytes,
        key: str,
        names: tuple[bytes, bytes],
        how: _End,
        value: JSONValue = None,
        ttl: float | None = None,
    ) -> None:
        self._untrack(token)
        try:
            script, keys, args = self._end_call(token, key, names, how, value, ttl)
        except BaseException:
            await self._aend(side, token, key, names, "release")
            raise
        # Shielded: a task cancelled here still ends its lease; the outcome is then logged.
        run = self._background(self._afenced(side, key, how, script, keys, args))
        try:
            await asyncio.shield(run)
        except asyncio.CancelledError:
            run.add_done_callback(self._log_failure(f"{how} key {key!r}"))
            raise

    async def aclose(self) -> None:
        """Close the running loop's client, then ``close()``."""
        side = self._sides.pop(asyncio.get_running_loop(), None)
        if side is not None:
            await side.closer.aclose()
        await asyncio.to_thread(self.close)


_SCRIPTS = {"acquire": _ACQUIRE, "fenced": _FENCED_END, "release": _RELEASE, "renew": _RENEW}


class _RedisLease(Lease):
    """A lock held under ``token``, and the value read under it."""

    __slots__ = ("_storage", "_key", "_names", "_token")

    def __init__(
        self,
        storage: RedisStorage,
        key: str,
        names: tuple[bytes, bytes],
        token: bytes,
        value: JSONValue | None,
        error: CorruptRecordError | None = None,
    ):
        super().__init__(value, error)
        self._storage, self._key, self._names = storage, key, names
        self._token: bytes | None = token

    def _take(self) -> bytes:
        token, self._token = self._token, None
        if token is None:
            raise RuntimeError(f"the lease on key {self._key!r} has already ended")
        return token

    def save(self, value: JSONValue, *, ttl: float | None = None) -> None:
        self._storage._end(self._take(), self._key, self._names, "save", value, ttl)

    def delete(self) -> None:
        self._storage._end(self._take(), self._key, self._names, "delete")

    def release(self) -> None:
        if self._token is not None:
            self._storage._end(self._take(), self._key, self._names, "release")


class _AsyncRedisLease(AsyncLease):
    """``_RedisLease`` for async code, ended through its event loop's client."""

    __slots__ = ("_storage", "_side", "_key", "_names", "_token")

    def __init__(
        self,
        storage: RedisStorage,
        side: _AsyncSide,
        key: str,
        names: tuple[bytes, bytes],
        token: bytes,
        value: JSONValue | None,
        error: CorruptRecordError | None = None,
    ):
        super().__init__(value, error)
        self._storage, self._side, self._key, self._names = storage, side, key, names
        self._token: bytes | None = token

    def _take(self) -> bytes:
        token, self._token = self._token, None
        if token is None:
            raise RuntimeError(f"the lease on key {self._key!r} has already ended")
        return token

    async def save(self, value: JSONValue, *, ttl: float | None = None) -> None:
        await self._storage._aend(self._side, self._take(), self._key, self._names, "save", value, ttl)

    async def delete(self) -> None:
        await self._storage._aend(self._side, self._take(), self._key, self._names, "delete")

    async def release(self) -> None:
        if self._token is not None:
            await self._storage._aend(self._side, self._take(), self._key, self._names, "release")


class _AsyncSide:
    """What one event loop uses: its own redis.asyncio client, the scripts on it, and what closes it."""

    __slots__ = ("client", "scripts", "closer")

    def __init__(self, client: redis.asyncio.Redis, closer: AsyncGenerator[None, None]):
        self.client = client
        self.scripts: dict[str, AsyncScript] = {name: client.register_script(text) for name, text in _SCRIPTS.items()}
        self.closer = closer


async def _closed_with_loop(
    sides: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncSide],
    loop: asyncio.AbstractEventLoop,
    client: redis.asyncio.Redis,
) -> AsyncGenerator[None, None]:
    # An async generator left suspended: its loop finalizes it at shutdown (asyncio.run calls
    # loop.shutdown_asyncgens()), the one moment a library can still await on a loop that ends.
    # Without it, every asyncio.run() that forgot aclose() would leave open sockets to GC.
    try:
        yield
    finally:
        sides.pop(loop, None)
        await client.aclose()


# Connection settings a redis.asyncio connection takes as the sync one does: where and how to
# connect. Everything else in a sync pool's kwargs is sync-bound (parsers, callbacks, handlers).
_PORTABLE_SETTINGS = frozenset(
    "host port path db username password credential_provider socket_timeout socket_connect_timeout socket_keepalive "
    "socket_keepalive_options socket_type retry_on_timeout retry_on_error health_check_interval client_name lib_name "
    "lib_version driver_info protocol encoding encoding_errors ssl_keyfile ssl_certfile ssl_cert_reqs "
    "ssl_include_verify_flags ssl_exclude_verify_flags ssl_ca_certs ssl_ca_data ssl_ca_path ssl_check_hostname "
    "ssl_min_version ssl_ciphers ssl_password".split()
)


def _async_pool_settings(client: redis.Redis) -> tuple[type[redis.asyncio.connection.AbstractConnection], dict[str, Any]] | None:
    """The connection class and kwargs of a redis.asyncio pool that reaches what ``client`` reaches, or None."""
    pool = getattr(client, "connection_pool", None)
    if type(pool) not in (redis.ConnectionPool, redis.BlockingConnectionPool):  # Sentinel's finds its server itself
        return None
    assert pool is not None
    sync_class = pool.connection_class
    connection_class: type[redis.asyncio.connection.AbstractConnection]
    if issubclass(sync_class, redis.UnixDomainSocketConnection):
        connection_class = redis.asyncio.UnixDomainSocketConnection
    elif issubclass(sync_class, redis.SSLConnection):
        connection_class = redis.asyncio.SSLConnection
    elif issubclass(sync_class, redis.Connection):
        connection_class = redis.asyncio.Connection
    else:
        return None
    inits = [vars(cls)["__init__"] for cls in connection_class.__mro__ if "__init__" in vars(cls)]
    accepted = {name for init in inits for name in inspect.signature(init).parameters}
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k in _PORTABLE_SETTINGS and k in accepted}
    retry = pool.connection_kwargs.get("retry")
    if retry is not None:
        # The same policy for asyncio; redis-py offers no public way to read a Retry's backoff.
        kwargs["retry"] = redis.asyncio.retry.Retry(retry._backoff, retry.get_retries(), retry._supported_errors)
    return connection_class, kwargs


def _where(client: redis.Redis) -> tuple[Hashable, ...]:
    """The server and db ``client`` reaches, as identity sees them (no user, no password)."""
    kwargs: dict[str, Any] = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if kwargs.get("path"):
        return ("redis+unix", kwargs["path"], int(kwargs.get("db") or 0))
    return ("redis", kwargs.get("host", "localhost"), int(kwargs.get("port") or 6379), int(kwargs.get("db") or 0))
