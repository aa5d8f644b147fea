"""SessionEngine: the sessions of one kind in one storage, one key at a time. No telebot here.

Every way of reaching a session goes through an engine: the sync middleware, the async
middleware, ``edit``/``get``/``delete`` from jobs and admin code, and the command line. Each
takes the same two locks in the same order: the key inside this process (``_locks``, shared by
every engine on the same store), then across processes (the storage's ``acquire``). A load
reads the record under both; a finish writes what changed and releases both.

The shells own *when*: an update's hold lasts from ``pre_process`` to ``post_process`` (the
sync shell also releases it when telebot skips ``post_process``), an ``edit`` block's from
entering to leaving. Decisions about records (versions, expiry, what changed) live in
``_record.Format``; this module only sequences them with the storage calls, once blocking and
once for asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable, Hashable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, NoReturn, TypeVar

from . import _json
from ._locks import FutureWaiter, Hold, KeyLocks, ThreadWaiter, table_for, waits_forever
from ._record import LEFT_AS_IT_IS, Format, Loaded, Migration
from .errors import CorruptRecordError, DecodeError, EncodeError, SessionError, SessionKeyError, StorageError
from .storage.base import AsyncLease, Lease, SessionStorage

__all__ = ["SessionEngine", "Handle", "HeldRecord", "QUARANTINE", "parse_quarantined"]

logger = logging.getLogger("telesession")

S = TypeVar("S")

QUARANTINE = "quarantine:"
"""Where unreadable records are moved: ``<prefix>quarantine:<UTC time>:<key>`` in the same storage."""

_QUARANTINED = re.compile(r"quarantine:(\d{8}T\d{6}\.\d{6}Z):(.*)", re.DOTALL)


def parse_quarantined(name: str) -> tuple[str, str, str] | None:
    """``(prefix, original key, UTC time)`` of a quarantined record's storage key, under any prefix; else ``None``."""
    found = _QUARANTINED.search(name)
    return None if found is None else (name[: found.start()], found.group(2), found.group(1))


class Handle(Loaded, Generic[S]):
    """One key held and its session loaded (with what was loaded); ended by ``SessionEngine.finish`` (or ``abandon``)."""

    __slots__ = ("key", "hold", "lease", "session", "anchor", "tag")

    key: str  # as the key function made it (without the prefix)
    hold: Hold
    lease: Any  # the storage's cross-process hold: a Lease after load(), an AsyncLease after aload(); None for a storage one process uses
    session: S
    anchor: object  # for the shell: what the handle's life is tied to (a frame, a task)
    tag: object  # for the shell: whose it is

    def _fill(self, key: str, hold: Hold, lease: Any, session: S) -> Handle[S]:
        self.key, self.hold, self.lease, self.session, self.anchor, self.tag = key, hold, lease, session, None, None
        return self

    def __repr__(self) -> str:
        return f"<Handle {self.key!r}{'' if self.hold.held else ' (released)'}>"


class HeldRecord:
    """A key held as handlers hold it, with its stored record as it is: for tools that work on records.

    ``record``: the stored JSON value (``None`` when absent or unreadable); ``error``: the
    ``CorruptRecordError`` when it exists but can't be read. ``write`` and ``delete`` may be
    called once, while the ``held_record`` block runs; leaving the block releases the key.
    """

    __slots__ = ("key", "record", "error", "_engine", "_lease", "_done")

    def __init__(self, engine: SessionEngine[Any], key: str, record: Any, error: CorruptRecordError | None, lease: Lease | None):
        self.key, self.record, self.error = key, record, error
        self._engine, self._lease, self._done = engine, lease, False

    def write(self, record: Any) -> None:
        """Store ``record`` (a session record, written as it is) under the key."""
        self._end(record)

    def delete(self) -> None:
        """Remove the record under the key."""
        self._end(None)

    def _end(self, record: Any) -> None:
        if self._done:
            raise SessionError(f"the record of {self.key!r} was already written or deleted in this block", key=self.key)
        self._done = True
        engine, name = self._engine, self._engine.prefix + self.key
        try:
            if self._lease is None:
                engine.storage.set(name, record) if record is not None else engine.storage.delete(name)
            elif record is not None:
                self._lease.save(record, ttl=engine.ttl)
            else:
                self._lease.delete()
        except BaseException as e:
            _reraise(e, "write" if record is not None else "delete", name, engine.storage)


class _Block:
    """The owner of an ``edit`` block's hold: the thread (or task) that runs the block."""

    __slots__ = ("thread_id", "task")

    def __init__(self, task: asyncio.Task[Any] | None = None) -> None:
        self.thread_id = threading.get_ident()
        self.task = task

    def __repr__(self) -> str:
        return "an edit() block"


class SessionEngine(Generic[S]):
    """Sessions made by ``initial`` in ``storage``, under ``prefix``.

    ``ttl`` (seconds or a timedelta): a session not saved for longer counts as absent.
    ``migrations``: ``{1: f1, ..., N: fN}``, see ``_record.Format``. ``on_unreadable``:
    ``"fail"`` (an unreadable record is reported and left where it is; the load raises) or
    ``"quarantine"`` (it is moved to ``<prefix>quarantine:<time>:<key>`` in the same storage,
    byte for byte where the storage can, and the load goes on with a fresh session).
    ``owns``: the keys this engine's key function can make (a compiled pattern), so that
    ``keys()`` lists only its own when engines share a storage and a prefix.
    """

    def __init__(
        self,
        *,
        initial: Callable[[], S],
        storage: SessionStorage,
        prefix: str = "",
        ttl: float | timedelta | None = None,
        migrations: Mapping[int, Migration] | None = None,
        on_unreadable: str = "fail",
        owns: re.Pattern[str] | None = None,
    ):
        if isinstance(ttl, timedelta):
            ttl = ttl.total_seconds()
        if on_unreadable not in ("fail", "quarantine"):
            raise ValueError(f"on_unreadable must be 'fail' or 'quarantine', got {on_unreadable!r}")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {prefix!r}")
        self.format: Format[S] = Format(initial, migrations=migrations, ttl=ttl)
        self.storage = storage
        self.prefix = prefix
        self.ttl: float | None = ttl
        self.on_unreadable = on_unreadable
        self._quarantining = on_unreadable == "quarantine"
        self.owns = owns
        self.locks: KeyLocks = table_for(storage.identity())
        # A storage that neither locks across processes nor overrides acquire: plain get/set.
        self._plain = type(storage).acquire is SessionStorage.acquire and type(storage).lock is SessionStorage.lock

    def __repr__(self) -> str:
        return f"SessionEngine({self.format.type.__name__}, {self.storage!r}, prefix={self.prefix!r})"

    # -- holding a key in this process ---------------------------------------------------------

    def try_hold(self, key: str, owner: object) -> Hold | None:
        """``key``'s in-process hold if nobody holds or awaits it, else ``None``."""
        return self.locks.try_acquire(self.prefix + key, owner)

    def hold(self, key: str, owner: object) -> Hold:
        """``key``'s in-process hold, waiting (this thread) for it; refuses a wait that would never end."""
        name = self.prefix + key
        hold = self.locks.try_acquire(name, owner)  # a free key (the usual case) without a waiter or the mutex
        if hold is not None:
            return hold
        waiter = ThreadWaiter()
        hold = self.locks.acquire(name, owner, waiter)
        if hold is None:
            self._refuse_waiting_forever(name, waiter, ("thread", threading.get_ident()))
            hold = waiter.wait(self.locks, name)
        return hold

    async def ahold(self, key: str, owner: object) -> Hold:
        """``key``'s in-process hold, awaiting it (never blocking the loop); refuses a wait that would never end."""
        name = self.prefix + key
        hold = self.locks.try_acquire(name, owner)
        if hold is not None:
            return hold
        waiter = FutureWaiter(asyncio.get_running_loop())
        hold = self.locks.acquire(name, owner, waiter)
        if hold is None:
            self._refuse_waiting_forever(name, waiter, asyncio.current_task())
            hold = await waiter.wait(self.locks, name)
        return hold

    def _refuse_waiting_forever(self, name: str, waiter: Any, me: Hashable) -> None:
        """Raise, out of the queue, rather than wait for a key whose holders wait for one of ours
        (an update's handler editing its own key, or two editing each other's)."""
        chain = waits_forever(self.locks, name, me)
        if chain is None or not self.locks.cancel(name, waiter):  # no circle, or the key came meanwhile
            return
        key = name[len(self.prefix) :]
        if len(chain) == 1:
            raise SessionKeyError(
                f"session key {key!r} is already held by {chain[0].owner!r} on this "
                f"{'thread' if isinstance(me, tuple) else 'task'}: waiting would never end (inside a handler, use the "
                "session it was given; two session middlewares on one storage must make different keys)",
                key=key,
            )
        steps = "; ".join(f"{hold.key!r} is held by {hold.owner!r}, which waits for {after.key!r}" for hold, after in zip(chain, chain[1:]))
        raise SessionKeyError(
            f"waiting for session key {key!r} would never end: {steps}, held here. Refused, so that the others go on "
            "(edit other chats' sessions outside handlers, or take keys in one order)",
            key=key,
        )

    # -- loading and finishing ---------------------------------------------------------------------

    def load(self, hold: Hold, *, blocking: bool = True) -> Handle[S] | None:
        """Read the session under ``hold`` and the storage's cross-process hold.

        ``None`` only with ``blocking=False`` when another process holds the key (``hold``
        is kept). On any error both holds are released and a ``SessionError`` is raised.
        """
        name, lease = hold.key, None
        try:
            if self._plain:
                try:
                    record: Any = self.storage.get(name)
                    error = None
                except CorruptRecordError as e:
                    record, error = None, e
            else:
                lease = self.storage.acquire(name, blocking=blocking)
                if lease is None:
                    return None
                record, error = lease.value, lease.error
            if error is not None or self._quarantining:
                unreadable = self._unreadable(name, record, error)
                if unreadable is not None:  # quarantine: move it aside, go on with a fresh session
                    self.storage.rename(name, self._quarantine_name(name))
                    self._log_quarantine(name, unreadable)
                    record = None
            session, handle = self.format.read(name, record, self.storage, make=Handle)
        except BaseException as e:
            self._release(hold, lease)
            _reraise(e, "load", name, self.storage)
        return handle._fill(name[len(self.prefix) :], hold, lease, session)

    async def aload(self, hold: Hold, *, blocking: bool = True) -> Handle[S] | None:
        """``load`` for async code: the storage is awaited (in a thread where it blocks)."""
        name, lease = hold.key, None
        try:
            if self._plain:
                try:
                    record: Any = await self.storage.aget(name)
                    error = None
                except CorruptRecordError as e:
                    record, error = None, e
            else:
                lease = await self.storage.aacquire(name, blocking=blocking)
                if lease is None:
                    return None
                record, error = lease.value, lease.error
            unreadable = self._unreadable(name, record, error) if error is not None or self._quarantining else None
            if unreadable is not None:
                await self.storage.arename(name, self._quarantine_name(name))
                self._log_quarantine(name, unreadable)
                record = None
            session, handle = self.format.read(name, record, self.storage, make=Handle)
        except BaseException as e:
            await self._arelease(hold, lease)
            _reraise(e, "load", name, self.storage)
        return handle._fill(name[len(self.prefix) :], hold, lease, session)

    def _unreadable(self, name: str, record: Any, error: CorruptRecordError | None) -> SessionError | None:
        """Why the record under ``name`` must be quarantined, or ``None`` to read it (which raises if it must fail)."""
        if error is None:
            if self.on_unreadable != "quarantine":
                return None
            try:
                self.format.read(name, record, self.storage)  # decoded twice only under quarantine; cheap beside I/O
                return None
            except (CorruptRecordError, DecodeError) as e:
                return e
        if self.on_unreadable != "quarantine":
            raise error
        return error

    def finish(self, handle: Handle[S], session: Any, *, save: bool = True) -> bool:
        """End a load: write ``session`` if it changed (``None``: delete the record) and release.

        ``save=False`` releases without writing. Returns whether the storage was written.
        Errors (a session of the wrong type, a value JSON can't hold, a failed write) release
        the holds too, then raise ``SessionError`` naming the key; the stored record stays.
        """
        hold, lease, name = handle.hold, handle.lease, handle.hold.key
        if not hold.held:
            raise self._not_held(handle)
        try:
            if not save:
                record: Any = False
            elif session is None:
                record = None if handle.exists else False
            else:
                if type(session) is not self.format.type:
                    self.format.check(handle.key, session)
                record = self.format.record(handle.key, session, handle)
                if record is None:
                    record = False
        except BaseException:
            self._release(hold, lease)
            raise
        try:
            _json.vouched = record  # Format.record checked it: the storage's dumps need not look for NaN again
            if lease is None:
                if record is None:
                    self.storage.delete(name)
                elif record is not False:
                    self.storage.set(name, record)
            elif record is None:
                lease.delete()
            elif record is not False:
                lease.save(record, ttl=self.ttl)
            else:
                lease.release()
        except BaseException as e:
            if isinstance(e, EncodeError) and isinstance(record, dict):
                self.format.explain(handle.key, record)
            _reraise(e, "save", name, self.storage)
        finally:
            _json.vouched = None
            hold.release()
        return record is not False

    async def afinish(self, handle: Handle[S], session: Any, *, save: bool = True) -> bool:
        """``finish`` for async code."""
        hold, lease, name = handle.hold, handle.lease, handle.hold.key
        if not hold.held:
            raise self._not_held(handle)
        try:
            record = self._decide(handle, session) if save else False
        except BaseException:
            await self._arelease(hold, lease)
            raise
        try:
            if lease is None:
                if record is None:
                    await self.storage.adelete(name)
                elif record is not False:
                    await self.storage.aset(name, record)
            elif record is None:
                await lease.delete()
            elif record is not False:
                await lease.save(record, ttl=self.ttl)
            else:
                await lease.release()
        except BaseException as e:
            if isinstance(e, EncodeError) and isinstance(record, dict):
                self.format.explain(handle.key, record)
            _reraise(e, "save", name, self.storage)
        finally:
            hold.release()
        return record is not False

    def _decide(self, handle: Handle[S], session: Any) -> dict[str, Any] | None | bool:
        """The record to write, ``None`` to delete, ``False`` to write nothing."""
        if session is None:
            return None if handle.exists else False
        self.format.check(handle.key, session)
        record = self.format.record(handle.key, session, handle)
        return False if record is None else record

    def abandon(self, handle: Handle[S]) -> None:
        """Release without writing (the handler raised, telebot skipped ``post_process``)."""
        if handle.hold.held:
            self._release(handle.hold, handle.lease)

    async def aabandon(self, handle: Handle[S]) -> None:
        if handle.hold.held:
            await self._arelease(handle.hold, handle.lease)

    def _release(self, hold: Hold, lease: Lease | None) -> None:
        # The storage's hold first: nobody here may take the key before other processes see it free.
        try:
            if lease is not None:
                lease.release()
        except Exception:
            logger.exception("telesession: releasing the storage's hold on %r in %s failed", hold.key, self.storage)
        finally:
            hold.release()

    async def _arelease(self, hold: Hold, lease: AsyncLease | None) -> None:
        try:
            if lease is not None:
                await lease.release()
        except Exception:
            logger.exception("telesession: releasing the storage's hold on %r in %s failed", hold.key, self.storage)
        finally:
            hold.release()

    def _not_held(self, handle: Handle[S]) -> SessionError:
        return SessionError(
            f"session {handle.key!r} is no longer held here (this process was forked while it was loaded, "
            "or its update ended): its changes were not saved",
            key=handle.key,
        )

    # -- unreadable records ----------------------------------------------------------------------

    def _quarantine_name(self, name: str) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        return f"{self.prefix}{QUARANTINE}{stamp}:{name[len(self.prefix):]}"

    def _log_quarantine(self, name: str, error: BaseException) -> None:
        logger.warning(
            "telesession: %s; it was moved aside to the key starting %r in the same storage (list with "
            "`telesession ls URL 'quarantine:*'`, restore with `telesession restore`), and the update goes on with a fresh session",
            str(error).removesuffix(LEFT_AS_IT_IS), f"{self.prefix}{QUARANTINE}",
        )

    # -- sessions outside handlers ---------------------------------------------------------------

    @contextlib.contextmanager
    def edit(self, key: str) -> Iterator[S]:
        """The session of ``key``, held as handlers hold it; saved on leaving if it changed, dropped if the block raises."""
        _check_key(key)
        handle = self.load(self.hold(key, _Block()))
        assert handle is not None
        try:
            yield handle.session
        except BaseException:
            self.abandon(handle)
            raise
        self.finish(handle, handle.session)

    @contextlib.asynccontextmanager
    async def aedit(self, key: str) -> AsyncIterator[S]:
        """``edit`` for async code."""
        _check_key(key)
        handle = await self.aload(await self.ahold(key, _Block(asyncio.current_task())))
        assert handle is not None
        try:
            yield handle.session
        except BaseException:
            await self.aabandon(handle)
            raise
        await self.afinish(handle, handle.session)

    def get(self, key: str) -> S | None:
        """A copy of the stored session of ``key`` (migrated in memory), or ``None`` (absent, expired); takes no hold."""
        _check_key(key)
        name = self.prefix + key
        try:
            session, loaded = self.format.read(name, self.storage.get(name), self.storage, make=Loaded)
        except BaseException as e:
            _reraise(e, "read", name, self.storage)
        return session if loaded.stored is not None else None

    @contextlib.contextmanager
    def held_record(self, key: str) -> Iterator[HeldRecord]:
        """``key`` held as handlers hold it (in this process and across processes), with its record as stored."""
        _check_key(key)
        hold = self.hold(key, _Block())
        lease: Lease | None = None
        try:
            if self._plain:
                try:
                    record, error = self.storage.get(hold.key), None
                except CorruptRecordError as e:
                    record, error = None, e
            else:
                lease = self.storage.acquire(hold.key)
                assert lease is not None
                record, error = lease.value, lease.error
        except BaseException as e:
            hold.release()
            _reraise(e, "read", hold.key, self.storage)
        held = HeldRecord(self, key, record, error, lease)
        try:
            yield held
        finally:
            if not held._done and lease is not None:
                lease.release()
            hold.release()

    async def aget(self, key: str) -> S | None:
        _check_key(key)
        name = self.prefix + key
        try:
            session, loaded = self.format.read(name, await self.storage.aget(name), self.storage, make=Loaded)
        except BaseException as e:
            _reraise(e, "read", name, self.storage)
        return session if loaded.stored is not None else None

    def delete(self, key: str) -> bool:
        """Remove ``key``'s session, held as handlers hold it; ``False`` when there was none."""
        _check_key(key)
        hold = self.hold(key, _Block())
        if self._plain:
            try:
                existed = self.storage.has(hold.key)
                self.storage.delete(hold.key)
            except BaseException as e:
                _reraise(e, "delete", hold.key, self.storage)
            finally:
                hold.release()
            return existed
        try:
            lease = self.storage.acquire(hold.key)
        except BaseException as e:
            hold.release()
            _reraise(e, "delete", hold.key, self.storage)
        assert lease is not None
        try:
            lease.delete()
        except BaseException as e:
            _reraise(e, "delete", hold.key, self.storage)
        finally:
            hold.release()
        return lease.value is not None or lease.error is not None

    async def adelete(self, key: str) -> bool:
        _check_key(key)
        hold = await self.ahold(key, _Block(asyncio.current_task()))
        try:
            if self._plain:
                existed = await self.storage.ahas(hold.key)
                await self.storage.adelete(hold.key)
                return existed
            lease = await self.storage.aacquire(hold.key)
            assert lease is not None
            await lease.delete()
            return lease.value is not None or lease.error is not None
        except BaseException as e:
            _reraise(e, "delete", hold.key, self.storage)
        finally:
            hold.release()

    def _own(self, name: str) -> str | None:
        if not name.startswith(self.prefix):
            return None
        key = name[len(self.prefix) :]
        if key.startswith(QUARANTINE) or (self.owns is not None and not self.owns.fullmatch(key)):
            return None
        return key

    def keys(self) -> Iterator[str]:
        """This engine's stored keys, as its key function made them (no prefix, no quarantined records)."""
        try:
            for name in self.storage.keys():
                key = self._own(name)
                if key is not None:
                    yield key
        except NotImplementedError:
            raise
        except BaseException as e:
            _reraise(e, "list", None, self.storage)

    async def akeys(self) -> AsyncIterator[str]:
        try:
            async for name in self.storage.akeys():
                key = self._own(name)
                if key is not None:
                    yield key
        except NotImplementedError:
            raise
        except BaseException as e:
            _reraise(e, "list", None, self.storage)

    def quarantined(self) -> Iterator[tuple[str, str, str]]:
        """``(storage key, original key, when)`` of every quarantined record under this prefix."""
        for name in self.storage.keys():
            found = parse_quarantined(name)
            if found is not None and found[0] == self.prefix:
                yield name, found[1], found[2]

    def sweep(self, now: float | None = None) -> int:
        """Remove every record of this engine not saved for longer than ``ttl``; returns how many.

        Safe while the bot runs: each candidate is held as handlers hold it and checked
        again before it goes. Unreadable records are left alone (see ``on_unreadable``).
        """
        self._need_ttl()
        removed = 0
        for key in list(self.keys()):
            if self.format.expired(self.storage.get(self.prefix + key), now) and self.remove_if_expired(key, now):
                removed += 1
        return removed

    def _need_ttl(self) -> None:
        if self.ttl is None:
            raise ValueError("sweep() needs a ttl: SessionMiddleware(..., ttl=seconds)")

    def remove_if_expired(self, key: str, now: float | None = None) -> bool:
        """Remove ``key``'s record if it is expired when held (checked again under the hold); whether it went."""
        _check_key(key)
        if self.ttl is None:
            raise ValueError("remove_if_expired() needs a ttl")
        hold = self.hold(key, _Block())
        try:
            if self._plain:
                if not self.format.expired(self.storage.get(hold.key), now):
                    return False
                self.storage.delete(hold.key)
                return True
            lease = self.storage.acquire(hold.key)
            assert lease is not None
            if self.format.expired(lease.value, now):
                lease.delete()
                return True
            lease.release()
            return False
        finally:
            hold.release()

    async def asweep(self, now: float | None = None) -> int:
        """``sweep`` for async code (each candidate in a thread, so the loop never waits on it)."""
        self._need_ttl()
        removed = 0
        async for key in self.akeys():
            if self.format.expired(await self.storage.aget(self.prefix + key), now):
                hold = await self.ahold(key, _Block(asyncio.current_task()))
                try:
                    lease = await self.storage.aacquire(hold.key)
                    assert lease is not None
                    if self.format.expired(lease.value, now):
                        await lease.delete()
                        removed += 1
                    else:
                        await lease.release()
                finally:
                    hold.release()
        return removed

    def move(self, old: str, new: str, *, replace: bool = False) -> bool:
        """Move ``old``'s record to ``new`` (a group that became a supergroup), both held in a fixed order.

        Moves only when ``old`` has a record (readable or not: it moves as it is) and, unless
        ``replace``, ``new`` has none; returns whether it moved. When both exist and not
        ``replace``, nothing moves and a warning names both (nothing is lost).
        """
        _check_key(old)
        _check_key(new)
        if old == new:
            return False
        first, second = sorted((old, new))
        h1 = self.hold(first, _Block())
        try:
            h2 = self.hold(second, _Block())
            try:
                with contextlib.ExitStack() as stack:
                    if not self._plain:  # the storage's holds too, in the same order
                        for hold in (h1, h2):
                            lease = self.storage.acquire(hold.key)
                            assert lease is not None
                            stack.callback(lease.release)
                    if not self.storage.has(self.prefix + old):
                        return False
                    if not replace and self.storage.has(self.prefix + new):
                        logger.warning(
                            "telesession: session %r was not moved to %r in %s: %r already has a session; both are kept",
                            old, new, self.storage, new,
                        )
                        return False
                    return self.storage.rename(self.prefix + old, self.prefix + new)
            finally:
                h2.release()
        finally:
            h1.release()


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise SessionKeyError(f"a session key is a non-empty str, got {key!r} (per_chat.key(chat_id) makes a chat's key)", key=None)


def _reraise(error: BaseException, doing: str, name: str | None, where: object) -> NoReturn:
    """Raise again: telesession's own errors and BaseExceptions as they are, anything else a
    storage raised as a StorageError caused by it."""
    if isinstance(error, SessionError) or not isinstance(error, Exception):
        raise error
    about = f"session {name!r}" if name is not None else "sessions"
    raise StorageError(f"{doing} {about} in {where!r} failed: {error!r}", key=name, location=repr(where), original_error=error) from error

