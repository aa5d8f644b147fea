"""Per-key locks inside one process: one FIFO queue per key, handed from holder to waiter.

Everything that waits for a session key waits here: a thread in ``edit()``, an update parked
by the sync middleware (its worker thread goes back to telebot), a task of the async
middleware. When a key is released, it goes straight to the oldest waiter (never "free for
whoever is fastest"), so the updates of one key run in the order they asked for it.

A waiter is any object with ``granted(hold)``: called once, on the releasing thread, after the
key is already the waiter's, so it must only hand the hold on (set an event, schedule a call)
and never block. If it raises, the key passes to the next waiter.

A wait that could never end is refused instead (``waits_forever``): code that holds one key and
waits for another whose holder waits, directly or through others, for a key it holds (two
handlers each editing the other's chat, say). Owners tell who runs them: an asyncio ``task``, a
``thread_id``, or a frame on some thread's stack (a sync update); an owner nobody runs right now
(a parked update) stands for itself.

One table serves every storage object that names the same store (``SessionStorage.identity``).
Entries exist only while a key is held or awaited, so a table does not grow with the number of
keys ever seen. In a child forked while keys were held, every table starts empty: those holds
belong to the parent's updates (see ``Hold.held``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import weakref
from collections import deque
from collections.abc import Hashable
from types import FrameType
from typing import Protocol

logger = logging.getLogger("telesession")

__all__ = ["Hold", "KeyLocks", "Waiter", "ThreadWaiter", "FutureWaiter", "table_for", "waits_forever"]


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
        self._queues: dict[str, deque[tuple[Waiter, object, Hashable]]] = {}  # key -> (waiter, owner, its runner), only while awaited
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
            runner = _runner(owner)
            self._queues.setdefault(key, deque()).append((waiter, owner, runner))
            _waiting[runner] = (self, key)
            return None

    def cancel(self, key: str, waiter: Waiter) -> bool:
        """Take ``waiter`` out of ``key``'s queue; ``False`` when it is not there (it was granted)."""
        with self._mutex:
            queue = self._queues.get(key)
            if queue is None:
                return False
            for i, (queued, _, runner) in enumerate(queue):
                if queued is waiter:
                    del queue[i]
                    if not queue:
                        del self._queues[key]
                    _waiting.pop(runner, None)
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
                waiter, owner, runner = queue.popleft()
                if not queue:
                    del self._queues[key]
                _waiting.pop(runner, None)
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


# -- waits that would never end --------------------------------------------------------------------

# Who waits for which key right now, by runner (see ``_runner``): each waits for one key at a time.
_waiting: dict[Hashable, tuple[KeyLocks, str]] = {}
_cycle_mutex = threading.Lock()


def _runner(owner: object) -> Hashable:
    """Who runs ``owner``'s code, as it queues for a key: its task, its thread, or itself (a parked update).

    A frame owner queues from its own thread (a lazy session loading in its handler).
    """
    task = getattr(owner, "task", None)
    if task is not None:
        return task  # type: ignore[no-any-return]
    if type(owner) is FrameType:
        return ("thread", threading.get_ident())
    thread_id = getattr(owner, "thread_id", None)
    return ("thread", thread_id) if thread_id is not None else owner


def _holder_runner(owner: object, me: Hashable) -> Hashable:
    """Who runs the code of ``owner``, a key's holder: as ``_runner``, and for a frame (an update
    running in it) the thread on whose stack it is: this one, or one of the threads waiting now."""
    if type(owner) is not FrameType:
        return _runner(owner)
    here: FrameType | None = sys._getframe()
    while here is not None:
        if here is owner:
            return ("thread", threading.get_ident())
        here = here.f_back
    threads = [r for r in list(_waiting) if type(r) is tuple and r != me]
    stacks = sys._current_frames() if threads else {}
    for runner in threads:
        frame = stacks.get(runner[1])
        while frame is not None:
            if frame is owner:
                return runner
            frame = frame.f_back
    return owner  # not run by anyone who waits: it will end, so it can't close a circle


def waits_forever(table: KeyLocks, key: str, me: Hashable) -> list[Hold] | None:
    """For ``me`` (a task, or ``("thread", id)``), queued for ``key``: the holds it would wait for in a
    circle back to itself (the first is ``key``'s, the last one of its own), or ``None`` when its
    wait will end.

    Called by every waiter after it queued, one at a time: of two that close a circle, the later
    sees it. Holds move on while the circle is read, so it is read twice and counts only when
    both reads find it: a waiter granted its key between them (not stuck after all) breaks it.
    """
    with _cycle_mutex:
        first = _circle(table, key, me)
        return first if first is not None and _circle(table, key, me) == first else None


def _circle(table: KeyLocks, key: str, me: Hashable) -> list[Hold] | None:
    chain: list[Hold] = []
    seen = {me}
    where: tuple[KeyLocks, str] | None = (table, key)
    while where is not None:
        holder = where[0].holder(where[1])
        if holder is None:
            return None
        chain.append(holder)
        runner = _holder_runner(holder.owner, me)
        if runner == me:
            return chain
        if runner in seen:
            return None  # a circle that does not pass through me: not mine to break
        seen.add(runner)
        where = _waiting.get(runner)
    return None


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
    global _by_store_mutex, _cycle_mutex
    _by_store_mutex = threading.Lock()
    _cycle_mutex = threading.Lock()
    _waiting.clear()
    for table in list(_tables):
        table._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
