"""RedisStorage: sessions in Redis, shared by processes on any number of hosts.

The only module of telesession that imports redis-py (``pip install 'telesession[redis]'``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

try:
    import redis
    from redis.exceptions import RedisError, ResponseError
except ImportError as e:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "telesession.storage.redis needs redis-py, which is not installed: pip install 'telesession[redis]'"
    ) from e

import orjson

from ..errors import CorruptRecordError, StorageError
from .base import JSONValue, SessionStorage, dump_json

__all__ = ["RedisStorage"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

# Compare-and-delete / compare-and-extend: only the holder of the token may release or renew.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_EXTEND = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_GLOB_SPECIAL = frozenset(b"*?[]\\")


def _utf8(text: str) -> bytes:
    # surrogatepass: every Python str is a usable key, lone surrogates included.
    return text.encode("utf-8", "surrogatepass")


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
    """One JSON string per session at ``<prefix>data:<key>``; locks at ``<prefix>lock:<key>``.

    The two namespaces differ at a fixed position, so no session key (``"lock:x"`` included)
    can name a lock, and ``keys()``/``clear()`` never see locks. ``clear()`` removes only
    ``<prefix>data:*`` (SCAN, never KEYS); choose prefixes so that no other application's
    prefix starts with ``<prefix>data:``.

    ``ttl`` (seconds): a session expires that long after its last save (``get`` does not
    refresh it); ``None`` keeps sessions forever.

    ``lock(key)`` takes a lease of ``lock_lease`` seconds under a random token; only that
    token's holder releases it. One daemon thread per storage renews every held lease every
    ``lock_lease / 3`` s, so a slow handler keeps its lock; a dead process stops renewing and
    its lock expires within ``lock_lease``. Waiters retry every 1 ms (10 ms after 0.1 s).
    Exiting a lock whose lease was lost anyway (Redis unreachable for a whole lease, or
    restarted without its data) raises ``StorageError``: another process may have held it.

    Every Redis failure raises ``StorageError`` naming the key and the server (without
    password); a value that is not JSON, or a key of another type, ``CorruptRecordError``.
    A ``client`` you pass stays yours: ``close()`` closes only a client made by ``from_url``
    or by default (``redis.Redis()``: localhost:6379, db 0). redis-py retries a failed
    command (by default 10 times over ~3.5 s) before the error reaches you.
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
        self._data = _utf8(prefix + "data:")
        self._lock = _utf8(prefix + "lock:")
        self._ttl_ms = None if ttl is None else max(1, round(ttl * 1000))
        self._lease_ms = max(1, round(lock_lease * 1000))
        self._release = self.client.register_script(_RELEASE)
        self._extend = self.client.register_script(_EXTEND)
        self._start_process()

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "telesession:", ttl: float | None = None, lock_lease: float = 30.0, **options: Any
    ) -> RedisStorage:
        """A storage on its own client made by ``redis.Redis.from_url(url, **options)``; connects lazily."""
        storage = cls(redis.Redis.from_url(url, **options), prefix=prefix, ttl=ttl, lock_lease=lock_lease)
        storage._owns_client = True
        return storage

    def _start_process(self) -> None:
        # Called again in a forked child: the parent's holds, mutex and renewer are not ours.
        self._pid = os.getpid()
        self._held: dict[bytes, bytes] = {}  # token -> lock name; by token, so two holds never clash
        self._held_mutex = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _call(self, action: str, key: str | None, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except RedisError as e:
            about = f"key {key!r}" if key is not None else "sessions"
            if isinstance(e, ResponseError) and str(e).startswith("WRONGTYPE"):
                raise CorruptRecordError(
                    f"Redis {self.location}: session {key!r} is not a string: {e}", key=key, location=self.location, original_error=e
                ) from e
            raise StorageError(
                f"Redis {self.location}: cannot {action} {about}: {e}", key=key, location=self.location, original_error=e
            ) from e

    def get(self, key: str) -> JSONValue | None:
        """The stored value, or ``None`` (also once its TTL has passed)."""
        data = self._call("read", key, lambda: self.client.get(self._data + _utf8(key)))
        if data is None:
            return None
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise CorruptRecordError(
                f"Redis {self.location}: session {key!r} is not valid JSON: {e}", key=key, location=self.location, original_error=e
            ) from e

    def set(self, key: str, value: JSONValue) -> None:
        """Store ``value`` and restart its TTL. A value JSON cannot hold raises ``EncodeError``."""
        data = dump_json(key, value)
        self._call("write", key, lambda: self.client.set(self._data + _utf8(key), data, px=self._ttl_ms))

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self.client.delete(self._data + _utf8(key)))

    def has(self, key: str) -> bool:
        return bool(self._call("read", key, lambda: self.client.exists(self._data + _utf8(key))))

    def _scan(self, action: str) -> Iterator[bytes]:
        # Escape the prefix: it is taken literally, even if it holds glob characters.
        pattern = b"".join(b"\\" + bytes([c]) if c in _GLOB_SPECIAL else bytes([c]) for c in self._data) + b"*"
        names = self._call(action, None, lambda: self.client.scan_iter(match=pattern, count=1000))
        while True:
            name = self._call(action, None, lambda: next(names, None))
            if name is None:
                return
            yield _utf8(name) if isinstance(name, str) else name

    def keys(self) -> Iterator[str]:
        """Every key under the prefix, via SCAN: keys saved or expiring meanwhile may or may not show."""
        for name in self._scan("list"):
            yield name[len(self._data) :].decode("utf-8", "surrogatepass")

    def clear(self) -> None:
        """Delete every session under the prefix (SCAN + DEL in batches); locks and other keys stay."""
        batch: list[bytes] = []
        for name in self._scan("clear"):
            batch.append(name)
            if len(batch) >= 500:
                self._call("clear", None, lambda: self.client.delete(*batch))
                batch = []
        if batch:
            self._call("clear", None, lambda: self.client.delete(*batch))

    def lock(self, key: str) -> contextlib.AbstractContextManager[object]:
        """Hold ``key`` against every process using this Redis and prefix (see the class docstring)."""
        return self._hold(key)

    @contextlib.contextmanager
    def _hold(self, key: str) -> Iterator[None]:
        # A generator context manager may be finished from another thread than the one that
        # entered it, which the lock contract requires: nothing here is thread-bound.
        name = self._lock + _utf8(key)
        token = os.urandom(16).hex().encode()
        started = time.monotonic()
        while not self._call("lock", key, lambda: self.client.set(name, token, nx=True, px=self._lease_ms)):
            # Short sleeps: the default 0.1 s of redis-py's Lock gave 100 ms p99 waits.
            time.sleep(0.001 if time.monotonic() - started < 0.1 else 0.01)
        self._track(token, name)
        try:
            yield
        finally:
            with self._held_mutex:
                self._held.pop(token, None)
            released = self._call("unlock", key, lambda: self._release(keys=[name], args=[token]))
            if not released:
                raise StorageError(
                    f"Redis {self.location}: the lock on key {key!r} expired before its release; another process may have held it",
                    key=key,
                    location=self.location,
                )

    def _track(self, token: bytes, name: bytes) -> None:
        if self._pid != os.getpid():
            self._start_process()
        with self._held_mutex:
            self._held[token] = name
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew, name=f"telesession-redis-renewer-{id(self):x}", daemon=True)
                self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.lock_lease / 3):
            with self._held_mutex:
                held = list(self._held.items())
            for token, name in held:
                try:
                    renewed = self._extend(keys=[name], args=[token, self._lease_ms])
                except RedisError as e:
                    logger.warning("telesession: cannot renew the lock %r on Redis %s: %s", name, self.location, e)
                    continue
                if not renewed and token in self._held:
                    logger.warning("telesession: the lock %r on Redis %s expired while held", name, self.location)

    def close(self) -> None:
        """Stop renewing (held locks then expire within their lease) and close a client made here."""
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(timeout=5)
        if self._owns_client:
            self.client.close()
