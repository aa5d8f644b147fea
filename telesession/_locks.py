"""Per-key locks inside one process: one FIFO queue per key, handed from holder to waiter.

Everything that waits for a session key waits here: a thread in ``edit()``, an update parked
by the sync middleware (its worker thread goes back to telebot), a task of the async
middleware. When a key is released, it goes straight to the oldest waiter (never "free for
whoever is fastest"), so the updates of one key run in the order they asked for it.

A waiter is any object with ``granted(hold)``: called once, on the releasing thread, after the
key is already the waiter's, so it must only hand the hold on (set an event, schedule a call)
and never block. If it raises, the key passes to the next waiter.

One table serves every storage object that names the same store (``SessionStorage.identity``).
Entries exist only while a key is held or awaited, so a table does not grow with the number of
keys ever seen. In a child forked while keys were held, every table starts empty: those holds
belong to the parent's updates (see ``Hold.held``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Hashable
from typing import Protocol

logger = logging.getLogger("telesession")

__all__ = ["Hold", "KeyLocks", "Waiter", "ThreadWaiter", "FutureWaiter", "table_for"]


class Waiter(Protocol):
    def granted(self, hold: Hold) -> None: ...


class Hold:
    """One holder's hold on one key. ``owner`` says who holds it (an update, an ``edit`` block)."""

    __slots__ = ("table", "key", "owner")

    def __init__(self, table: KeyLocks, key: str, owner: object) -> None:
        self.table, self.key, self.owner = table, key, owner

    @property
    def held(self) -> bool:
        """Whether this hold still holds its key (False once released, and in a forked child)."""
        return self.table._holders.get(self.key) is self

    def release(self) -> bool:
        """Pass the key to its oldest waiter, or free it; ``False`` when it was no longer held."""
        return self.table._release(self)

    def __repr__(self) -> str:
        return f"<Hold {self.key!r} by {self.owner!r}{'' if self.held else ' (released)'}>"


class KeyLocks:
    """A table of per-key locks with FIFO hand-off; see the module docstring."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._holders: dict[str, Hold] = {}  # key -> its hold, only while held
        self._queues: dict[str, deque[tuple[Waiter, object]]] = {}  # key -> (waiter, owner), only while awaited
        _tables.add(self)

    def __len__(self) -> int:
        """How many keys are held or awaited right now."""
        with self._mutex:
            return len(self._holders.keys() | self._queues.keys())

    def holder(self, key: str) -> Hold | None:
        """The hold on ``key`` right now, if any."""
        return self._holders.get(key)

    def try_acquire(self, key: str, owner: object) -> Hold | None:
        """The key's hold if it is free (and nobody waits for it), else ``None``; never waits.

        Takes no mutex: ``dict.setdefault`` is atomic, and a key with waiters is never free
        (a release hands it straight to the oldest), so taking a free key overtakes nobody.
        """
        hold = Hold(self, key, owner)
        return hold if self._holders.setdefault(key, hold) is hold else None

    def acquire(self, key: str, owner: object, waiter: Waiter) -> Hold | None:
        """The key's hold if it is free; else ``waiter`` joins the key's queue and ``None`` is returned.

        A queued waiter's ``granted`` is called with the hold when its turn comes, unless
        ``cancel`` took it out of the queue first.
        """
        with self._mutex:
            if key not in self._holders:
                hold = self._holders[key] = Hold(self, key, owner)
                return hold
            self._queues.setdefault(key, deque()).append((waiter, owner))
            return None

    def cancel(self, key: str, waiter: Waiter) -> bool:
        """Take ``waiter`` out of ``key``'s queue; ``False`` when it is not there (it was granted)."""
        with self._mutex:
            queue = self._queues.get(key)
            if queue is None:
                return False
            for i, (queued, _) in enumerate(queue):
                if queued is waiter:
                    del queue[i]
                    if not queue:
                        del self._queues[key]
                    return True
            return False

    def waiting(self, key: str) -> int:
        """How many waiters are queued for ``key``."""
        with self._mutex:
            return len(self._queues.get(key, ()))

    def holds(self) -> list[Hold]:
        """The holds taken right now."""
        with self._mutex:
            return list(self._holders.values())

    def _release(self, hold: Hold) -> bool:
        key, holders = hold.key, self._holders
        if holders.get(key) is not hold:
            return False
        if key not in self._queues:  # nobody waits (the usual case): no mutex
            del holders[key]
            if key not in self._queues:
                return True
            # A waiter queued between the look and the del: it saw the key held, so hand it on.
        while True:
            with self._mutex:
                current = holders.get(key)
                if current is not None and current is not hold:
                    return True  # taken meanwhile by try_acquire: its release hands it on
                queue = self._queues.get(key)
                if not queue:
                    holders.pop(key, None)
                    return True
                waiter, owner = queue.popleft()
                if not queue:
                    del self._queues[key]
                hold = holders[key] = Hold(self, key, owner)
            try:
                waiter.granted(hold)  # outside the mutex: it may take other keys' locks
                return True
            except Exception:  # a broken waiter must not keep the key: pass it on
                logger.exception("telesession: handing session %r to its next waiter failed; passing it on", key)

    def _after_fork(self) -> None:
        self._mutex = threading.Lock()
        self._holders = {}
        self._queues = {}


class ThreadWaiter:
    """A thread blocked until its key is granted (``edit()``, a lazily loaded session)."""

    __slots__ = ("_event", "hold")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.hold: Hold | None = None

    def granted(self, hold: Hold) -> None:
        self.hold = hold
        self._event.set()

    def wait(self, table: KeyLocks, key: str) -> Hold:
        """Wait for the grant; interrupted (KeyboardInterrupt, say), leave no hold behind."""
        try:
            self._event.wait()
        except BaseException:
            if not table.cancel(key, self):
                self._event.wait()  # granted meanwhile: it is ours, so release it
                assert self.hold is not None
                self.hold.release()
            raise
        assert self.hold is not None
        return self.hold


class FutureWaiter:
    """An asyncio task waiting for its key: the grant resolves a future on the task's loop."""

    __slots__ = ("future", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.future: asyncio.Future[Hold] = loop.create_future()

    def granted(self, hold: Hold) -> None:
        if self._loop.is_closed():
            hold.release()
            return
        self._loop.call_soon_threadsafe(self._resolve, hold)

    def _resolve(self, hold: Hold) -> None:
        if self.future.done():  # cancelled before the grant arrived: nobody will use it
            hold.release()
        else:
            self.future.set_result(hold)

    async def wait(self, table: KeyLocks, key: str) -> Hold:
        """Await the grant; cancelled, leave no hold behind."""
        try:
            return await self.future
        except asyncio.CancelledError:
            if not table.cancel(key, self) and self.future.done() and not self.future.cancelled():
                self.future.result().release()  # granted and resolved, but the task was cancelled first
            # Otherwise: still queued (now removed), or the grant is on its way and _resolve releases it.
            raise


# Every table of this process (for fork), and the table of each store.
_tables: weakref.WeakSet[KeyLocks] = weakref.WeakSet()
_by_store: weakref.WeakValueDictionary[Hashable, KeyLocks] = weakref.WeakValueDictionary()
_by_store_mutex = threading.Lock()


def table_for(identity: Hashable) -> KeyLocks:
    """The one table of the store ``identity`` names, made on first use."""
    with _by_store_mutex:
        table = _by_store.get(identity)
        if table is None:
            table = _by_store[identity] = KeyLocks()
        return table


def _after_fork_in_child() -> None:
    global _by_store_mutex
    _by_store_mutex = threading.Lock()
    for table in list(_tables):
        table._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
