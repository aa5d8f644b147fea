"""Per-key locks inside one process that cannot outlive the update that took them.

telebot calls ``pre_process`` and ``post_process`` from one function call per update on one
thread, and skips every ``post_process`` when another middleware cancels the update or raises
(see REFERENCE.md). A lock released only in ``post_process`` would then stay held forever. So
each hold is *anchored* to a frame on the holding thread's stack (telebot's dispatch call for
that update): while the frame is on that thread's stack the update is still running, however
slow; once it is gone, the update is over and the hold is stale. A watcher thread releases
stale holds, the cross-process lock included, within ``WATCH_INTERVAL``. This is a liveness
test, not a timeout: a slow handler keeps its lock as long as it runs.

Entries exist only while a key is held or awaited, so the table does not grow with the
number of keys ever seen.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from types import FrameType
from typing import Callable

from .errors import SessionKeyError

logger = logging.getLogger("telesession")

WATCH_INTERVAL = 0.01
"""Seconds between two looks for stale holds (only while something is held)."""


class Hold:
    """One update's hold on one key."""

    __slots__ = ("key", "thread_id", "anchor", "on_release", "_table")

    def __init__(self, table: KeyLocks, key: str, anchor: FrameType):
        self._table = table
        self.key = key
        self.thread_id = threading.get_ident()
        # The update's frame; None from the moment the release begins (or, in a forked child,
        # for every hold of the parent's updates).
        self.anchor: FrameType | None = anchor
        # What else to release with this hold (the storage's cross-process lock).
        self.on_release: Callable[[], object] | None = None

    @property
    def held(self) -> bool:
        return self.anchor is not None

    def running(self, frames: dict[int, FrameType]) -> bool:
        """Whether the update that took this hold is still on its thread's stack."""
        frame = frames.get(self.thread_id)
        anchor = self.anchor
        while frame is not None:
            if frame is anchor:
                return True
            frame = frame.f_back
        return False

    def release(self) -> bool:
        """Release the hold; ``False`` when it was already released.

        Two threads never release one hold at the same time, so this takes no mutex: the
        update's own thread releases it while the update runs (in ``post_process``, or in
        ``pre_process`` when loading fails), and the watcher only once the update is over,
        which is after any release by its own thread has finished.
        """
        if self.anchor is None:
            return False
        self.anchor = None
        if self.on_release is not None:  # the storage's lock first: nobody here may take the key before it is free
            try:
                self.on_release()
            except Exception:
                logger.exception("telesession: releasing the storage lock of session %r failed", self.key)
        table = self._table
        del table._holders[self.key]
        if self.key in table._queues:  # read after the del: a waiter that registered before it is woken
            with table._mutex:
                queue = table._queues.get(self.key)
                if queue is not None:
                    queue.cond.notify()
        return True


class _Queue:
    """The updates waiting for one key; exists only while somebody waits."""

    __slots__ = ("cond", "waiters")

    def __init__(self, mutex: threading.Lock) -> None:
        self.cond = threading.Condition(mutex)
        self.waiters = 0


class KeyLocks:
    """A table of per-key locks; one per storage, so keys of one storage exclude each other.

    Taking a free key and releasing a key nobody waits for take no mutex: ``dict.setdefault``
    is atomic, and the mutex only orders waiters with the releases that wake them.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._holders: dict[str, Hold] = {}  # key -> its hold, only while held
        self._queues: dict[str, _Queue] = {}  # key -> its waiters, only while awaited
        _watcher.tables.add(self)

    def __len__(self) -> int:
        """How many keys are held or awaited right now."""
        with self._mutex:
            return len(self._holders.keys() | self._queues.keys())

    def acquire(self, key: str, anchor: FrameType) -> Hold:
        """Wait until ``key`` is free and hold it for the update running ``anchor``.

        Raises ``SessionKeyError`` when this same update already holds ``key``: waiting would
        never end (two middlewares on one storage producing the same key).
        """
        hold = Hold(self, key, anchor)
        holder = self._holders.setdefault(key, hold)
        if holder is not hold:
            self._wait(hold, holder)
        if _watcher.idle:
            _watcher.wake()
        return hold

    def _wait(self, hold: Hold, holder: Hold) -> None:
        # Returns with ``hold`` holding its key.
        key = hold.key
        if holder.thread_id == hold.thread_id and holder.running(sys._current_frames()):
            raise SessionKeyError(
                f"session key {key!r} is already held by this update: two SessionMiddlewares "
                "on one storage produce the same key; give them key functions that differ",
                key=key,
            )
        with self._mutex:
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(self._mutex)
            queue.waiters += 1
            try:
                # Registered before looking: a release that deletes the key after this look
                # finds the queue and wakes us.
                while self._holders.setdefault(key, hold) is not hold:
                    queue.cond.wait()
            finally:
                queue.waiters -= 1
                if not queue.waiters:
                    del self._queues[key]
                elif key not in self._holders:  # interrupted while the key was free: pass the wake-up on
                    queue.cond.notify()

    def holds(self) -> list[Hold]:
        """The holds taken right now."""
        return list(self._holders.values())


class _Watcher:
    """One daemon thread per process that releases holds whose update has ended.

    It looks every ``WATCH_INTERVAL`` while any table holds a key and sleeps otherwise. Taking
    a hold costs it one attribute read: ``idle`` is set before the last look for holds, and a
    hold is entered in its table before ``idle`` is read, so one of the two always sees the other.
    """

    def __init__(self) -> None:
        self.tables: weakref.WeakSet[KeyLocks] = weakref.WeakSet()
        self.idle = True
        self._wakeup = threading.Event()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        self.idle = False
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="telesession-watcher", daemon=True)
                    self._thread.start()
        self._wakeup.set()

    def _holds(self) -> list[Hold]:
        return [hold for table in list(self.tables) for hold in table.holds()]

    def _run(self) -> None:
        while True:
            self._wakeup.wait()
            self._wakeup.clear()
            while True:
                time.sleep(WATCH_INTERVAL)
                holds = self._holds()
                if not holds:
                    self.idle = True
                    if not self._holds():
                        break
                    self.idle = False
                    continue
                try:
                    self._release_stale(holds)
                except Exception:  # the watcher must outlive any surprise, or waiters wait forever
                    logger.exception("telesession: the lock watcher failed; retrying")

    @staticmethod
    def _release_stale(holds: list[Hold]) -> None:
        frames = sys._current_frames()
        stale = [hold for hold in holds if hold.held and not hold.running(frames)]
        del frames  # frame objects keep every local of every thread alive
        for hold in stale:
            if hold.release():
                logger.warning(
                    "telesession: an update of session %r ended without post_process (another "
                    "middleware cancelled it or raised); its lock was released and its changes dropped",
                    hold.key,
                )

    def _after_fork(self) -> None:
        # In a forked child the watcher thread is gone, and every hold belongs to the parent's
        # updates: forget them without releasing anything (releasing an inherited file lock
        # would unlock the parent's), and replace mutexes another thread may have held. A child
        # forked inside a handler finds its hold not held: it neither saves nor releases.
        for table in list(self.tables):
            for hold in table._holders.values():
                hold.anchor = None
            table._mutex = threading.Lock()
            table._holders = {}
            table._queues = {}
        self._thread = None
        self._start = threading.Lock()
        self._wakeup = threading.Event()
        self.idle = True


_watcher = _Watcher()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_watcher._after_fork)
