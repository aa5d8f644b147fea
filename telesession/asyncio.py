"""AsyncSessionMiddleware: sessions for telebot's ``AsyncTeleBot``, a shell over the same ``SessionEngine``.

AsyncTeleBot runs all updates of a batch at once (``asyncio.gather``), one task per update:
``pre_process`` holds the update's key (awaiting it, never blocking the loop, while another
update holds it) and loads the session; ``post_process`` saves what changed and releases.
AsyncTeleBot skips every ``post_process`` when a middleware cancels the update or raises, and
a task may be cancelled: the holds of an update end with its task, whichever way it ends (a
done callback releases what ``post_process`` did not).

The storage is awaited: Redis through redis-py's asyncio client, the blocking storages (files,
SQLite, your own) in a thread, so the loop never waits on I/O.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from telebot.asyncio_handler_backends import BaseMiddleware, CancelUpdate

from .engine import Handle
from .errors import SessionError, SessionKeyError
from .middleware import _MIGRATIONS, _Shell

__all__ = ["AsyncSessionMiddleware"]

logger = logging.getLogger("telesession")

S = TypeVar("S")

_ending: set[asyncio.Task[Any]] = set()  # releases scheduled by finished updates (kept from the GC)
_updates: dict[int, _TaskUpdate] = {}  # id of a running update's object -> its _TaskUpdate (see _dispatch._updates)


class _TaskUpdate:
    """One update of an AsyncTeleBot: its task, and the sessions loaded for it, per middleware."""

    __slots__ = ("obj_id", "task", "handles", "__weakref__")

    def __init__(self, obj_id: int, task: asyncio.Task[Any] | None) -> None:
        self.obj_id = obj_id
        self.task = task
        self.handles: dict[AsyncSessionMiddleware[Any], Handle[Any]] = {}
        if task is not None:
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        """The update's task is over: release what ``post_process`` did not (it was skipped, or cancelled)."""
        if _updates.get(self.obj_id) is self:
            del _updates[self.obj_id]
        for middleware, handle in list(self.handles.items()):
            self.handles.pop(middleware, None)
            logger.warning(
                "telesession: an update ended without post_process (another middleware cancelled it or raised, or its "
                "task was cancelled) while it held session %r; its lock was released and its changes dropped",
                handle.key,
            )
            ending = asyncio.get_running_loop().create_task(middleware.engine.aabandon(handle))
            _ending.add(ending)
            ending.add_done_callback(_ending.discard)

    def __repr__(self) -> str:
        return f"<update in task {self.task.get_name() if self.task else '?'}>"


def _update_of(obj: Any) -> _TaskUpdate:
    task = asyncio.current_task()
    update = _updates.get(id(obj))
    if update is None or update.task is not task:
        update = _updates[id(obj)] = _TaskUpdate(id(obj), task)
    return update


class AsyncSessionMiddleware(_Shell[S], BaseMiddleware):
    """Sessions for ``AsyncTeleBot``: the same arguments and behaviour as ``SessionMiddleware``.

    Register it with ``bot.setup_middleware(...)``; handlers read ``message.session`` or take
    a ``session`` parameter. Outside handlers: ``async with mw.edit(key) as s``, ``await
    mw.get(key)``, ``await mw.delete(key)``, ``async for key in mw.keys()``, ``await
    mw.sweep()``. With ``lazy=True``, ``await mw.load(message)`` loads the session in a handler
    (then ``mw.of(message)`` gives it too).
    """

    # -- AsyncTeleBot's hooks ------------------------------------------------------------------

    async def pre_process(self, obj: Any, data: dict[str, Any]) -> CancelUpdate | None:
        try:
            key = self.key_of(obj)
        except SessionKeyError as e:
            logger.error("telesession: %s; the update was not handled", e, exc_info=e.__cause__)
            return CancelUpdate()
        if getattr(obj, "content_type", None) in _MIGRATIONS:
            await self._follow_migration(obj)
        if key is None:
            setattr(obj, self.attr, None)
            data[self.attr] = None
            return None
        if self.lazy:
            setattr(obj, self.attr, self._lazy)
            return None
        try:
            handle = await self._load(obj, key)
        except SessionError as e:
            self._log_failure(key, e, "loading")
            return CancelUpdate()
        setattr(obj, self.attr, handle.session)
        data[self.attr] = handle.session
        return None

    async def post_process(self, obj: Any, data: dict[str, Any], exception: BaseException | None) -> None:
        update = _updates.get(id(obj))
        handle = update.handles.pop(self, None) if update is not None else None
        if handle is None:
            return
        try:
            await self.engine.afinish(handle, getattr(obj, self.attr, None), save=exception is None)
        except SessionError as e:
            self._log_failure(handle.key, e, "saving")

    async def _load(self, obj: Any, key: str) -> Handle[S]:
        update = _update_of(obj)
        hold = await self.engine.ahold(key, update)
        handle = await self.engine.aload(hold)  # on any error (cancellation too) it releases the hold
        assert handle is not None
        update.handles[self] = handle
        return handle

    # -- sessions from code ------------------------------------------------------------------

    def _handle_of(self, obj: Any) -> Handle[S] | None:
        update = _updates.get(id(obj))
        return update.handles.get(self) if update is not None else None

    def of(self, obj: Any) -> S:
        """The session of the update object ``obj`` inside its handler, typed as the session class.

        With ``lazy=True``, ``await load(obj)`` first. Raises ``SessionKeyError`` when the
        update has no key, ``SessionError`` when this middleware did not load its session.
        """
        if getattr(obj, self.attr, None) is self._lazy:
            raise SessionError("lazy=True: load the session with `await sessions.load(message)` first")
        return self._loaded(obj)  # type: ignore[no-any-return]

    async def load(self, obj: Any) -> S:
        """The session of ``obj``, loaded now if ``lazy=True`` left it unloaded (held until the update ends)."""
        if getattr(obj, self.attr, None) is not self._lazy:
            return self.of(obj)
        key = self.key_of(obj)
        if key is None:
            setattr(obj, self.attr, None)
            raise SessionKeyError(f"this {type(obj).__name__} has no session: get_session_key gave no key for it")
        handle = await self._load(obj, key)
        setattr(obj, self.attr, handle.session)
        return handle.session

    def edit(self, key: str | Any) -> AbstractAsyncContextManager[S]:
        """``async with mw.edit(key) as session``: held as handlers hold it, saved on leaving if it changed."""
        return self.engine.aedit(self._key(key))

    async def get(self, key: str | Any) -> S | None:
        """A copy of the stored session of ``key`` (or update object), or ``None``; holds nothing."""
        return await self.engine.aget(self._key(key))

    async def delete(self, key: str | Any) -> bool:
        """Remove the session of ``key`` (or update object); ``False`` when there was none."""
        return await self.engine.adelete(self._key(key))

    def keys(self) -> AsyncIterator[str]:
        """``async for key in mw.keys()``: this middleware's stored keys, without ``prefix``, only its own."""
        return self.engine.akeys()

    async def sweep(self) -> int:
        """Remove records not saved for longer than ``ttl``; returns how many."""
        return await self.engine.asweep()

    async def move(self, old: str, new: str) -> bool:
        """Move a session to another key if that key has none; returns whether it moved."""
        return await asyncio.to_thread(self.engine.move, old, new)

    async def _follow_migration(self, obj: Any) -> None:
        try:
            # Listing keys (per user in a chat, per topic) and the held moves: in a thread, off the loop.
            found = await asyncio.to_thread(self._moves, obj)
            for old_key, new_key in found[2] if found else ():
                await self.move(old_key, new_key)
        except (SessionError, NotImplementedError) as e:  # NotImplementedError: a storage that can't list its keys
            logger.error("telesession: moving the sessions of a group that became a supergroup failed: %s", e)
