"""What the sync middleware must know about telebot's dispatch, kept here so nothing else does.

telebot (4.20 to 4.37 at least) runs each update as one call
``TeleBot._run_middlewares_and_handler(message, handlers, middlewares, update_type)`` on one
thread: every ``pre_process``, the handler, every ``post_process``. Private names this module
relies on, each pinned by ``tests/test_telebot_internals.py`` so that a telebot release that
changes them fails loudly:

- ``TeleBot._run_middlewares_and_handler``: its code object marks an update's frame; it is
  called again to replay a parked update; its parameters and its locals ``data`` and
  ``skip_handlers`` are read when an update is parked.
- ``TeleBot._exec_task``: hands a replay to the bot's worker pool (threaded bots).
- ``TeleBot.worker_pool.workers``: a replay still queued when they have all stopped is dropped.

**An update's holds end with its call.** telebot skips every ``post_process`` when a
middleware cancels the update or raises, when an earlier ``post_process`` raises, or when it
rejects a handler's signature. So an update's holds are tied to its dispatch frame: while that
frame is on its thread's stack the update runs, however slowly; once it is gone the update is
over, and the watcher thread releases what it still holds within ``WATCH_INTERVAL``. Simpler
anchors fail: telebot's ``data`` dict can't be weakly referenced and a traceback kept in
``worker_pool.exception_info`` keeps it alive anyway; a thread-local notices the end only when
the thread's next update starts; a timeout would cut a slow handler short.

**Parking.** An update whose key is held by another update gives its worker back: it returns
``CancelUpdate`` from ``pre_process`` and waits in the key's queue without a thread. When the
key is handed to it, its dispatch is replayed through telebot's own
``_run_middlewares_and_handler``, on the bot's worker pool (a thread of ours for a bot with
``threaded=False``), so filters, handlers and later middlewares run as they would have.
Middlewares registered before the session middleware already ran ``pre_process``: the replay
puts stand-ins in their place that restore what they put in ``data`` and then run their real
``post_process``, so each sees one ``pre_process`` and one ``post_process``. Holds taken by an
earlier session middleware stay with the parked update. A parked update runs exactly once,
unless the bot's worker pool stops first (``stop_bot()``): then, like the updates still in
telebot's queue, it is dropped, with a warning naming its key.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any

from telebot import TeleBot
from telebot.handler_backends import BaseMiddleware, CancelUpdate, SkipHandler

from ._locks import Hold
from .engine import Handle, SessionEngine

if TYPE_CHECKING:
    from .middleware import SessionMiddleware

__all__ = ["DISPATCH_CODE", "WATCH_INTERVAL", "Update", "dispatch_frame", "park", "update_of"]

logger = logging.getLogger("telesession")

DISPATCH_CODE = TeleBot._run_middlewares_and_handler.__code__
WATCH_INTERVAL = 0.01
"""Seconds between two looks for updates that ended without ``post_process`` (only while any holds)."""

ATTR = "_telesession_update"  # on the update object: what the session middlewares loaded for it
_MAX_WAITING_THREADS = 16  # threads waiting for another process's lock on behalf of parked updates


def dispatch_frame(caller: FrameType | None) -> FrameType | None:
    """The frame of telebot's dispatch call that ``caller`` runs in (a wrapper may stand between)."""
    frame = caller
    while frame is not None:
        if frame.f_code is DISPATCH_CODE:
            return frame
        frame = frame.f_back
    return None


class Update:
    """One update as the session middlewares see it: where it runs and what it holds.

    ``frame`` is telebot's dispatch frame while the update runs there; ``None`` while it is
    parked or replayed (then its ``Replay`` ends it). ``handles``: the sessions loaded for it,
    per middleware. ``granted``: what parking obtained for a middleware, for its replay to claim.
    """

    __slots__ = ("thread_id", "frame", "handles", "granted", "replay", "__weakref__")

    def __init__(self, frame: FrameType | None) -> None:
        self.thread_id = threading.get_ident()
        self.frame = frame
        self.handles: dict[SessionMiddleware[Any], Handle[Any]] = {}
        self.granted: dict[SessionMiddleware[Any], Hold | Handle[Any]] = {}
        self.replay: Replay | None = None

    def running(self) -> bool:
        """Whether the update is still running (asked only on its own thread)."""
        if self.frame is None:
            return True
        frame: FrameType | None = sys._getframe()
        while frame is not None:
            if frame is self.frame:
                return True
            frame = frame.f_back
        return False

    def add(self, middleware: SessionMiddleware[Any], handle: Handle[Any]) -> None:
        self.handles[middleware] = handle
        if self.frame is not None:
            _watcher.watch(self)

    def pop(self, middleware: SessionMiddleware[Any]) -> Handle[Any] | None:
        handle = self.handles.pop(middleware, None)
        if not self.handles:
            _watcher.live.discard(self)
        return handle

    def end(self, why: str) -> None:
        """Release everything still held or granted (the update is over without its ``post_process``)."""
        _watcher.live.discard(self)
        leftovers = list(self.granted.items()) + list(self.handles.items())
        self.granted.clear()
        self.handles.clear()
        for middleware, held in leftovers:
            if isinstance(held, Handle):
                middleware.engine.abandon(held)
                logger.warning("telesession: %s session %r; its lock was released and its changes dropped", why, held.key)
            elif held.held:
                held.release()

    def __repr__(self) -> str:
        return f"<update on thread {self.thread_id}>" if self.replay is None else "<parked update>"


def update_of(obj: Any, frame: FrameType | None) -> Update:
    """The ``Update`` of ``obj`` running in ``frame``: shared by the middlewares of one dispatch or replay."""
    update: Update | None = obj.__dict__.get(ATTR)
    if update is None or (update.replay is None and update.frame is not frame):
        update = Update(frame)
        obj.__dict__[ATTR] = update
    return update


def update_if_any(obj: Any) -> Update | None:
    return obj.__dict__.get(ATTR) if hasattr(obj, "__dict__") else None


# -- parking -----------------------------------------------------------------------------------


class Replay:
    """A parked update's second run through telebot's dispatch."""

    __slots__ = ("update", "obj", "bot", "handlers", "middlewares", "update_type", "state", "_mutex", "__weakref__")

    def __init__(self, update: Update, obj: Any, frame: FrameType, parker: SessionMiddleware[Any]) -> None:
        local = frame.f_locals
        self.update, self.obj = update, obj
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
        """Queue the replay: on the bot's worker pool, or on a thread of its own for a bot without one."""
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
            self.bot._exec_task(self.run)

    def run(self) -> None:
        with self._mutex:
            if self.state != "queued":
                return
            self.state = "running"
        _watcher.queued.discard(self)
        update = self.update
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
                update.end("an update of (parked, then replayed) ended without post_process:")

    def drop(self, why: str | None = None) -> None:
        """The replay will never run (the bot stopped, or the update failed to load): release what it holds, once."""
        with self._mutex:
            if self.state in ("running", "dropped"):
                return
            self.state = "dropped"
        _watcher.queued.discard(self)
        if why is None:
            keys = [h.key for h in self.update.granted.values()] + [h.key for h in self.update.handles.values()]
            logger.warning(
                "telesession: the bot stopped before a parked %s of session %s could run; it was dropped, as telebot "
                "drops the updates still in its queue", self.update_type, ", ".join(map(repr, keys)) or "?",
            )
        self.update.replay = None
        self.update.end(why or "a dropped update held")


class _Granted:
    """The waiter of a parked update: the key comes to it, then its replay is queued."""

    __slots__ = ("update", "middleware")

    def __init__(self, update: Update, middleware: SessionMiddleware[Any]) -> None:
        self.update, self.middleware = update, middleware

    def granted(self, hold: Hold) -> None:
        self.update.granted[self.middleware] = hold
        replay = self.update.replay
        assert replay is not None
        replay.submit()


def park(update: Update, middleware: SessionMiddleware[Any], obj: Any, key: str, frame: FrameType) -> CancelUpdate:
    """Queue the update for ``key`` without a thread; it is replayed once the key is handed to it."""
    _parked(update, obj, frame, middleware)
    waiter = _Granted(update, middleware)
    hold = middleware.engine.locks.acquire(middleware.engine.prefix + key, update, waiter)
    if hold is not None:  # freed meanwhile
        waiter.granted(hold)
    return CancelUpdate()


def park_elsewhere(update: Update, middleware: SessionMiddleware[Any], obj: Any, hold: Hold, frame: FrameType) -> CancelUpdate | None:
    """Another process holds the key: wait for it on a thread of ours, not the worker; ``None`` when
    too many such waits run already (the caller then waits in place)."""
    if not _waiting_threads.acquire(blocking=False):
        return None
    replay = _parked(update, obj, frame, middleware)
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


def _parked(update: Update, obj: Any, frame: FrameType, middleware: SessionMiddleware[Any]) -> Replay:
    replay = update.replay = Replay(update, obj, frame, middleware)
    _watcher.live.discard(update)
    update.frame = None  # from here on the replay ends it, not its (finished) first call
    return replay


_waiting_threads = threading.BoundedSemaphore(_MAX_WAITING_THREADS)


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

    It looks every ``WATCH_INTERVAL`` while anything is watched and sleeps otherwise. Watching
    costs an update one set insertion and one attribute read: ``idle`` is set before the last
    look, and an update is added before ``idle`` is read, so one of the two sees the other.
    """

    def __init__(self) -> None:
        self.live: set[Update] = set()  # updates running in a dispatch frame with something held
        self.queued: weakref.WeakSet[Replay] = weakref.WeakSet()  # replays on a worker pool, not started
        self.idle = True
        self._wakeup = threading.Event()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, update: Update) -> None:
        self.live.add(update)
        if self.idle:
            self.wake()

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
                if not (self.live or self.queued):
                    self.idle = True
                    if not (self.live or self.queued):
                        break
                    self.idle = False
                try:
                    self._look()
                except Exception:  # the watcher must outlive any surprise, or keys stay held
                    logger.exception("telesession: the update watcher failed; retrying")

    def _look(self) -> None:
        # Listed before the stacks are read: an update watched after this look is judged next time,
        # never against stacks read before it started.
        candidates = list(self.live)
        frames = sys._current_frames()
        stale = [u for u in candidates if u.frame is not None and not _on_stack(u.frame, frames.get(u.thread_id))]
        del frames  # frame objects keep every local of every thread alive
        for update in stale:
            update.end("an update ended without post_process (another middleware cancelled it or raised) while it held")
        for replay in list(self.queued):
            if not _pool_alive(replay.bot):
                replay.drop()

    def _after_fork(self) -> None:
        # The watcher thread is gone, and every watched update belongs to the parent.
        self.live = set()
        self.queued = weakref.WeakSet()
        self._thread = None
        self._start = threading.Lock()
        self._wakeup = threading.Event()
        self.idle = True


def _on_stack(anchor: FrameType, frame: FrameType | None) -> bool:
    while frame is not None:
        if frame is anchor:
            return True
        frame = frame.f_back
    return False


_watcher = _Watcher()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_watcher._after_fork)
