"""What the sync middleware must know about telebot's dispatch, kept here so nothing else does.

telebot (4.20 to 4.37 at least) runs each update as one call
``TeleBot._run_middlewares_and_handler(message, handlers, middlewares, update_type)`` on one
thread: every ``pre_process``, the handler, every ``post_process``. Private names this module
relies on, each pinned by ``tests/test_telebot_internals.py`` so that a telebot release that
changes them fails loudly:

- ``TeleBot._run_middlewares_and_handler``: its code object marks an update's frame; it is
  called again to replay a parked update; its parameters and its locals ``data`` and
  ``skip_handlers`` are read when an update is parked.
- ``TeleBot.worker_pool.tasks`` (a ``queue.Queue``) takes a replay at its front;
  ``TeleBot.worker_pool.workers``: a replay still queued when they have all stopped is dropped.

**An update's holds end with its call.** telebot skips every ``post_process`` when a
middleware cancels the update or raises, when an earlier ``post_process`` raises, or when it
rejects a handler's signature. So a loaded session is *anchored* to its update's dispatch
frame (the frame also owns the key's hold): while that frame is on some thread's stack the
update runs, however slowly; once it is gone the update is over, and the watcher releases what
it still holds within ``WATCH_INTERVAL``. Simpler anchors fail: telebot's ``data`` dict can't be
weakly referenced, and a traceback kept in ``worker_pool.exception_info`` keeps it alive anyway;
a thread-local notices the end only when the thread's next update starts; a timeout would cut a
slow handler short.

**Parking.** An update whose key is held by another update gives its worker back: it returns
``CancelUpdate`` from ``pre_process`` and waits in the key's queue without a thread. When the
key is handed to it, its dispatch is replayed through telebot's own
``_run_middlewares_and_handler``, first in the bot's worker queue (it is the oldest update of
its key; a thread of ours for a bot with ``threaded=False``), so filters, handlers and later
middlewares run as they would have. Middlewares registered before the session middleware
already ran ``pre_process``: the replay puts stand-ins in their place that restore what they
put in ``data`` and then run their real ``post_process``, so each sees one ``pre_process`` and
one ``post_process``. Sessions loaded by an earlier session middleware stay held, anchored to
the replay. A parked update runs exactly once, unless the bot's worker pool stops first
(``stop_bot()``): then, like the updates still in telebot's queue, it may be dropped, with a
warning naming its key.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
import weakref
from types import FrameType
from typing import Any, Protocol

from telebot import TeleBot
from telebot.handler_backends import BaseMiddleware, CancelUpdate, SkipHandler

from ._locks import Hold
from .engine import Handle, SessionEngine


class SyncMiddleware(Protocol):
    """What this module uses of a ``middleware.SessionMiddleware`` (a protocol: that module imports this one)."""

    engine: SessionEngine[Any]
    _handles: dict[int, Handle[Any]]  # id of an update's object -> the session it loaded for it

    def _log_failure(self, key: str, error: Exception, doing: str) -> None: ...

__all__ = ["DISPATCH_CODE", "WATCH_INTERVAL", "Parked", "dispatch_frame", "loaded", "park", "park_elsewhere", "watch"]

logger = logging.getLogger("telesession")

DISPATCH_CODE = TeleBot._run_middlewares_and_handler.__code__
WATCH_INTERVAL = 0.01
"""Seconds between two looks for updates that ended without ``post_process`` (only while any holds)."""

_MAX_WAITING_THREADS = 16  # threads waiting for another process's lock on behalf of parked updates


def dispatch_frame(caller: FrameType | None) -> FrameType | None:
    """The frame of telebot's dispatch call that ``caller`` runs in (a wrapper may stand between)."""
    frame = caller
    while frame is not None:
        if frame.f_code is DISPATCH_CODE:
            return frame
        frame = frame.f_back
    return None


# -- watching loaded sessions ----------------------------------------------------------------------
# Each SessionMiddleware keeps the sessions it loaded in ``_handles`` (by the id of the update's
# object); the watcher looks there: a loaded session costs one dict entry, no bookkeeping beside.


def watch(handle: Handle[Any], middleware: SyncMiddleware, anchor: object, obj_id: int) -> None:
    """``handle`` was loaded by ``middleware`` for the update of object ``obj_id``, running in ``anchor``
    (telebot's dispatch frame, or a parked update's replay)."""
    handle.anchor, handle.tag = anchor, obj_id
    middleware._handles[obj_id] = handle
    if _watcher.idle:
        _watcher.wake()


def loaded() -> list[tuple[Handle[Any], SyncMiddleware]]:
    """Every session loaded for a running (or parked) update, with its middleware."""
    return [(h, m) for m in list(_middlewares) for h in list(m._handles.values())]


def end(handle: Handle[Any], middleware: SyncMiddleware, why: str) -> None:
    """Release ``handle`` without saving: its update is over without its ``post_process``."""
    tag = handle.tag
    if isinstance(tag, int) and middleware._handles.get(tag) is handle:
        del middleware._handles[tag]
    handle.anchor = None
    middleware.engine.abandon(handle)
    logger.warning("telesession: %s session %r; its lock was released and its changes dropped", why, handle.key)


def _reanchor(old: tuple[object, ...], new: Replay) -> None:
    """Sessions loaded in ``old`` (a frame, an earlier replay) now end with ``new``, and are held by its update."""
    for handle, _ in loaded():
        if handle.anchor in old:
            handle.anchor = new
            handle.hold.owner = new.parked


# Every SessionMiddleware of this process (registered when made), for the watcher.
_middlewares: weakref.WeakSet[SyncMiddleware] = weakref.WeakSet()


# -- parking ---------------------------------------------------------------------------------------

# The parked (or replaying) updates, by the id of their update object (the replay keeps it alive).
parked: dict[int, Parked] = {}


class Parked:
    """An update that gave its worker back: what parking got for its middlewares, and its replay.

    It owns the holds handed to it while it waits, and those of earlier middlewares once it
    parked; ``thread_id`` (its replay's thread, while that runs) tells the lock table who runs
    it, to refuse waits that would never end.
    """

    __slots__ = ("obj_id", "granted", "replay", "thread_id", "__weakref__")

    def __init__(self, obj_id: int) -> None:
        self.obj_id = obj_id
        self.granted: dict[SyncMiddleware, Hold | Handle[Any]] = {}
        self.replay: Replay | None = None
        self.thread_id: int | None = None  # the replay's thread, once it runs

    def end(self, replay: Replay, why: str) -> None:
        """Release what the update still holds or was granted (its replay is over, or will never run)."""
        if parked.get(self.obj_id) is self:
            del parked[self.obj_id]
        for handle, middleware in loaded():
            if handle.anchor is replay:
                end(handle, middleware, why)
        granted, self.granted = list(self.granted.items()), {}
        for middleware, held in granted:
            if isinstance(held, Hold):
                held.release()
            else:
                middleware.engine.abandon(held)

    def __repr__(self) -> str:
        return "a parked update"


class Replay:
    """A parked update's second run through telebot's dispatch."""

    __slots__ = ("parked", "obj", "bot", "handlers", "middlewares", "update_type", "state", "_mutex", "__weakref__")

    def __init__(self, update: Parked, obj: Any, frame: FrameType, parker: SyncMiddleware) -> None:
        local = frame.f_locals
        self.parked, self.obj = update, obj
        self.bot: Any = local["self"]
        self.handlers: Any = local["handlers"]
        self.update_type: str = local["update_type"]
        middlewares: list[Any] = list(local["middlewares"])
        earlier = middlewares[: middlewares.index(parker)]
        if earlier:  # stand-ins that replay what the earlier middlewares' pre_process did
            data, skip = dict(local["data"]), bool(local["skip_handlers"])
            earlier = [_Replayed(m, self.update_type, data if i == 0 else None, skip and i == 0) for i, m in enumerate(earlier)]
        self.middlewares = earlier + middlewares[len(earlier) :]
        self.state = "parked"  # -> queued -> running, or -> dropped
        self._mutex = threading.Lock()

    def submit(self) -> None:
        """Queue the replay: first in the bot's worker queue, or on a thread of its own for a bot without one."""
        with self._mutex:
            if self.state != "parked":
                return
            self.state = "queued"
        if not self.bot.threaded:
            threading.Thread(target=self.run, name="telesession-replay", daemon=True).start()
        elif not _pool_alive(self.bot):
            self.drop()
        else:
            _watcher.queue(self)
            _run_first(self.bot, self.run)

    def run(self) -> None:
        with self._mutex:
            if self.state != "queued":
                return
            self.state = "running"
        _watcher.queued.discard(self)
        update = self.parked
        update.thread_id = threading.get_ident()
        try:
            self.bot._run_middlewares_and_handler(self.obj, self.handlers, self.middlewares, self.update_type)
        except Exception as e:
            if self.bot.threaded:
                raise  # the worker pool reports it, as for any update
            handler = getattr(self.bot, "exception_handler", None)
            if not (handler is not None and handler.handle(e)):
                logger.error("telesession: a parked %s raised while it ran: %r", self.update_type, e, exc_info=e)
        finally:
            if update.replay is self:  # else it parked again: its next replay ends it
                update.replay = None
                update.end(self, "an update of (parked, then replayed) ended without post_process:")

    def drop(self, why: str | None = None) -> None:
        """The replay will never run (the bot stopped, or the update failed to load): release what it holds, once."""
        with self._mutex:
            if self.state in ("running", "dropped"):
                return
            self.state = "dropped"
        _watcher.queued.discard(self)
        if why is None:
            keys = [h.key for h in self.parked.granted.values()] + [h.key for h, _ in loaded() if h.anchor is self]
            logger.warning(
                "telesession: the bot stopped before a parked %s of session %s could run; it was dropped, as telebot "
                "drops the updates still in its queue", self.update_type, ", ".join(map(repr, keys)) or "?",
            )
        self.parked.replay = None
        self.parked.end(self, why or "a dropped update held")


class _Granted:
    """The waiter of a parked update: the key comes to it, then its replay is queued."""

    __slots__ = ("update", "middleware")

    def __init__(self, update: Parked, middleware: SyncMiddleware) -> None:
        self.update, self.middleware = update, middleware

    def granted(self, hold: Hold) -> None:
        self.update.granted[self.middleware] = hold
        replay = self.update.replay
        assert replay is not None
        replay.submit()


def _parked(middleware: SyncMiddleware, obj: Any, frame: FrameType) -> Parked:
    """The update of ``obj`` (in ``frame``) parks: its loaded sessions now end with its replay, not its frame."""
    update = parked.get(id(obj))
    if update is None:
        update = parked[id(obj)] = Parked(id(obj))
    old = update.replay
    update.replay = Replay(update, obj, frame, middleware)
    update.thread_id = None  # nobody runs it until its replay does
    _reanchor((frame, old) if old is not None else (frame,), update.replay)
    return update


def park(middleware: SyncMiddleware, obj: Any, key: str, frame: FrameType) -> CancelUpdate:
    """Queue the update for ``key`` without a thread; it is replayed once the key is handed to it."""
    update = _parked(middleware, obj, frame)
    waiter = _Granted(update, middleware)
    hold = middleware.engine.locks.acquire(middleware.engine.prefix + key, update, waiter)
    if hold is not None:  # freed meanwhile
        waiter.granted(hold)
    return CancelUpdate()


def park_elsewhere(middleware: SyncMiddleware, obj: Any, hold: Hold, frame: FrameType) -> CancelUpdate | None:
    """Another process holds the key: wait for it on a thread of ours, not the worker; ``None`` when
    too many such waits run already (the caller then waits in place)."""
    if not _waiting_threads.acquire(blocking=False):
        return None
    update = _parked(middleware, obj, frame)
    replay = update.replay
    assert replay is not None
    engine: SessionEngine[Any] = middleware.engine

    def wait() -> None:
        try:
            handle = engine.load(hold)
        except Exception as e:
            middleware._log_failure(hold.key[len(engine.prefix) :], e, "loading")
            replay.drop("a parked update that failed to load held")  # not handled, as any update that fails to load
            return
        finally:
            _waiting_threads.release()
        assert handle is not None
        update.granted[middleware] = handle
        replay.submit()

    threading.Thread(target=wait, name="telesession-lock-wait", daemon=True).start()
    return CancelUpdate()


_waiting_threads = threading.BoundedSemaphore(_MAX_WAITING_THREADS)


def _run_first(bot: Any, task: Any) -> None:
    """Queue ``task`` at the front of a threaded bot's worker queue: a replay is the oldest update of its
    key, and at the back of a long queue it would keep the key (and so every later update of it) waiting."""
    tasks = getattr(getattr(bot, "worker_pool", None), "tasks", None)
    if not isinstance(tasks, queue.Queue):
        bot._exec_task(task)
        return
    with tasks.not_empty:  # the queue's mutex; what put() does, at the other end
        tasks.queue.appendleft((task, (), {}))
        tasks.unfinished_tasks += 1
        tasks.not_empty.notify()


class _Replayed(BaseMiddleware):
    """An earlier middleware in a replay: its ``pre_process`` already ran; replay its effect, run its ``post_process``."""

    update_sensitive = False

    def __init__(self, middleware: Any, update_type: str, data: dict[str, Any] | None, skip: bool) -> None:
        self.middleware, self.update_type, self.data, self.skip = middleware, update_type, data, skip

    def pre_process(self, message: Any, data: dict[str, Any]) -> SkipHandler | None:
        if self.data is not None:
            data.update(self.data)
        return SkipHandler() if self.skip else None

    def post_process(self, message: Any, data: dict[str, Any], exception: BaseException | None) -> None:
        middleware = self.middleware
        if getattr(middleware, "update_sensitive", False):
            method = getattr(middleware, f"post_process_{self.update_type}", None)
            if method is None:  # as telebot does
                logging.getLogger("TeleBot").error(
                    "Middleware: %s does not have post_process_%s method. Post process function was not executed.",
                    type(middleware).__name__, self.update_type,
                )
                return
            method(message, data, exception)
        else:
            middleware.post_process(message, data, exception)


def _pool_alive(bot: Any) -> bool:
    pool = getattr(bot, "worker_pool", None)
    return pool is not None and any(worker.is_alive() for worker in pool.workers)


# -- the watcher -----------------------------------------------------------------------------------


class _Watcher:
    """One daemon thread per process that ends updates whose dispatch is over, and drops replays of stopped bots.

    It looks every ``WATCH_INTERVAL`` while any session is loaded and sleeps otherwise. Watching
    costs an update one attribute read: ``idle`` is set before the last look, and a handle is
    added before ``idle`` is read, so one of the two sees the other.
    """

    def __init__(self) -> None:
        self.queued: weakref.WeakSet[Replay] = weakref.WeakSet()  # replays on a worker pool, not started
        self.idle = True
        self._wakeup = threading.Event()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None

    def queue(self, replay: Replay) -> None:
        self.queued.add(replay)
        if self.idle:
            self.wake()

    def wake(self) -> None:
        self.idle = False
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="telesession-watcher", daemon=True)
                    self._thread.start()
        self._wakeup.set()

    def _run(self) -> None:
        while True:
            self._wakeup.wait()
            self._wakeup.clear()
            while True:
                time.sleep(WATCH_INTERVAL)
                if not (self._busy() or self.queued):
                    self.idle = True
                    if not (self._busy() or self.queued):
                        break
                    self.idle = False
                try:
                    self._look()
                except Exception:  # the watcher must outlive any surprise, or keys stay held
                    logger.exception("telesession: the update watcher failed; retrying")

    @staticmethod
    def _busy() -> bool:
        return any(m._handles for m in list(_middlewares))

    def _look(self) -> None:
        # Listed before the stacks are read: a session loaded after this look is judged next time,
        # never against stacks read before its update started.
        candidates = [(h, m) for h, m in loaded() if type(h.anchor) is FrameType]
        if candidates:
            running: set[FrameType] = set()
            for frame in sys._current_frames().values():
                while frame is not None and frame not in running:
                    running.add(frame)
                    frame = frame.f_back  # type: ignore[assignment]
            stale = [(h, m) for h, m in candidates if h.anchor not in running and h.anchor is not None]
            del running  # frame objects keep every local of every thread alive
            for handle, middleware in stale:
                if middleware._handles.get(handle.tag) is handle:  # type: ignore[call-overload]
                    end(handle, middleware, "an update ended without post_process (another middleware cancelled it or raised) while it held")
        for replay in list(self.queued):
            if not _pool_alive(replay.bot):
                replay.drop()

    def _after_fork(self) -> None:
        # The watcher thread is gone, and every watched session belongs to the parent (the
        # middlewares' _handles too: their post_process finds the hold not held and saves nothing).
        self.queued = weakref.WeakSet()
        parked.clear()
        self._thread = None
        self._start = threading.Lock()
        self._wakeup = threading.Event()
        self.idle = True


_watcher = _Watcher()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_watcher._after_fork)
