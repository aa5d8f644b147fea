"""SessionMiddleware: sessions for telebot's sync ``TeleBot``, a shell over ``SessionEngine``.

One update flows one way: key -> hold (or park) -> read -> decode -> handlers -> encode ->
compare -> write -> release. ``pre_process`` does the first half and ``post_process`` the
second; ``_dispatch`` covers what telebot skips and replays parked updates.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import Any, Generic, TypeVar

from telebot import types
from telebot.handler_backends import BaseMiddleware, CancelUpdate

from . import _dispatch
from ._locks import Hold
from ._record import Migration
from .engine import Handle, SessionEngine
from .errors import SessionError, SessionKeyError
from .keys import KeyFunction, SessionKey, per_chat
from .storage.base import SessionStorage
from .storage.memory import MemoryStorage

__all__ = ["SessionMiddleware", "UPDATE_TYPES"]

logger = logging.getLogger("telesession")

S = TypeVar("S")

UPDATE_TYPES = [
    "message", "edited_message", "channel_post", "edited_channel_post",
    "business_message", "edited_business_message", "guest_message",
    "callback_query", "inline_query", "chosen_inline_query",  # not util's "chosen_inline_result"
    "shipping_query", "pre_checkout_query", "purchased_paid_media",
    "poll", "poll_answer", "my_chat_member", "chat_member", "chat_join_request",
    "message_reaction", "message_reaction_count", "chat_boost", "removed_chat_boost",
    "business_connection", "deleted_business_messages",
    "managed_bot", "subscription", "stopped_message_generation",
]  # fmt: skip
"""Every update kind telebot 4.37 hands to class middlewares."""

# Service messages of a group that became a supergroup (telebot's content_type for them).
_MIGRATIONS = frozenset({"migrate_to_chat_id", "migrate_from_chat_id"})

# Names telebot itself puts in ``data`` or gives a meaning as handler parameters.
_TELEBOT_NAMES = frozenset({"data", "bot", "state"})
_UPDATE_CLASSES = (
    "Message", "CallbackQuery", "InlineQuery", "ChosenInlineResult", "ShippingQuery", "PreCheckoutQuery", "Poll",
    "PollAnswer", "ChatMemberUpdated", "ChatJoinRequest", "MessageReactionUpdated", "MessageReactionCountUpdated",
    "ChatBoostUpdated", "ChatBoostRemoved", "BusinessConnection", "BusinessMessagesDeleted", "PaidMediaPurchased",
)  # fmt: skip


class _Lazy:
    """What ``obj.<attr>`` holds in a lazy middleware until ``of(obj)`` loads the session."""

    __slots__ = ("attr",)

    def __init__(self, attr: str) -> None:
        self.attr = attr

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the session is not loaded yet (lazy=True): call sessions.of(message) first, not message.{self.attr}.{name}")

    def __getitem__(self, name: Any) -> Any:
        raise TypeError(f"the session is not loaded yet (lazy=True): call sessions.of(message) first, not message.{self.attr}[{name!r}]")

    __setitem__ = __getitem__

    def __repr__(self) -> str:
        return "<session not loaded: lazy=True, use sessions.of(obj)>"


class _Shell(Generic[S]):
    """What the sync and the async middleware share: the options, the engine, keys, and errors.

    ``initial``: a dataclass, or a zero-argument callable returning a dataclass instance or a
    dict; called anew for every new session (and once here, to learn the session's type).
    ``storage``: where sessions live; ``MemoryStorage()`` by default, which loses them on restart.
    ``get_session_key``: update object -> key, ``None`` for "no session" (then ``obj.<attr>``
    is ``None`` and the handlers still run); see ``telesession.keys``. Default: per chat.
    ``attr``: the attribute set on the update object and the name of the handler parameter
    that receives the session (``def h(message, session)``).
    ``prefix``: stored keys are ``prefix + key``, so bots and middlewares can share a storage.
    ``ttl`` (seconds or timedelta): a session not saved for longer counts as absent.
    ``migrations``: ``{1: f1, ..., N: fN}``; records are upgraded on load, step by step.
    ``lazy``: load nothing until a handler asks for the session.
    ``on_unreadable``: ``"fail"`` (default: report, leave the record, skip the update) or
    ``"quarantine"`` (move the record aside in the same storage, go on with a fresh session).
    """

    update_types = UPDATE_TYPES

    def __init__(
        self,
        *,
        initial: Callable[[], S],
        storage: SessionStorage | None = None,
        get_session_key: KeyFunction = per_chat,
        attr: str = "session",
        prefix: str = "",
        ttl: float | timedelta | None = None,
        migrations: Mapping[int, Migration] | None = None,
        lazy: bool = False,
        on_unreadable: str = "fail",
    ):
        _check_attr(attr)
        if not callable(get_session_key):
            raise TypeError(f"get_session_key must be a function of the update object, got {get_session_key!r}")
        if storage is None:
            logger.warning("telesession: no storage given, using MemoryStorage: sessions are lost when the bot restarts")
            storage = MemoryStorage()
        self.engine: SessionEngine[S] = SessionEngine(
            initial=initial, storage=storage, prefix=prefix, ttl=ttl, migrations=migrations, on_unreadable=on_unreadable,
            owns=get_session_key.pattern if isinstance(get_session_key, SessionKey) else None,
        )
        self.storage = storage
        self.get_session_key = get_session_key
        self.attr = attr
        self.lazy = lazy
        self._lazy = _Lazy(attr)
        self._ready()

    def _ready(self) -> None:
        """What one shell sets up beside the options, once they are checked."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.engine.format.type.__name__}, {self.storage!r}, attr={self.attr!r})"

    def key_of(self, obj: Any) -> str | None:
        """``get_session_key(obj)``, checked: a non-empty str or ``None``; anything else raises ``SessionKeyError``."""
        try:
            key = self.get_session_key(obj)
        except Exception as e:
            raise self._key_failure(obj, e) from e
        if key is not None and (not isinstance(key, str) or not key):
            raise SessionKeyError(f"get_session_key returned {key!r} for a {type(obj).__name__}; a key is a non-empty str or None")
        return key

    @staticmethod
    def _key_failure(obj: Any, error: Exception) -> SessionKeyError:
        failure = SessionKeyError(f"get_session_key failed on a {type(obj).__name__}: {error!r}", original_error=error)
        failure.__cause__ = error
        return failure

    def _key(self, key: str | Any) -> str:
        if isinstance(key, str):
            return key
        found = self.key_of(key)
        if found is None:
            raise SessionKeyError(
                f"{key!r} gives no session key: pass a key (per_chat.key(chat_id), per_user.key(user_id)) "
                "or an update object that belongs to a chat"
            )
        return found

    def _handle_of(self, obj: Any) -> Handle[S] | None:
        """The handle of ``obj``'s running update loaded by this middleware, or ``None``."""
        raise NotImplementedError

    def _loaded(self, obj: Any) -> Any:
        """``obj``'s session if this middleware loaded it for the running update; else raise saying why not."""
        current = getattr(obj, self.attr, _MISSING)
        if current is not _MISSING and self._handle_of(obj) is not None:
            return current
        if current is None:
            raise SessionKeyError(
                f"this {type(obj).__name__} has no session of {self!r}: get_session_key gave no key for it "
                "(it does not belong to a chat, or a user, as the key function needs)"
            )
        raise SessionError(
            f"this {type(obj).__name__} has no session loaded by {self!r}: sessions.of() works for objects "
            "handled through the middleware (bot.setup_middleware(...) on a bot made with use_class_middlewares=True, "
            "an update type in update_types, and its update still running). Next-step and reply handlers bypass "
            "middlewares: use `with sessions.edit(message) as session:` there."
        )

    def _moves(self, obj: Any) -> tuple[int, int, list[tuple[str, str]]] | None:
        """For the service message of a group that became a supergroup: (old id, new id, the keys to move)."""
        rule = self.get_session_key
        to: Any = getattr(obj, "migrate_to_chat_id", None)
        frm: Any = getattr(obj, "migrate_from_chat_id", None)
        if not (to or frm) or not isinstance(rule, SessionKey) or getattr(obj, "chat", None) is None:
            return None
        old, new = (int(obj.chat.id), int(to)) if to else (int(frm), int(obj.chat.id))
        return old, new, rule.moves(old, new, self.engine.keys)

    def _log_failure(self, key: str, error: Exception, doing: str) -> None:
        consequence = "the update was not handled" if doing == "loading" else "its changes were not saved"
        logger.error("telesession: %s; %s", error, consequence, exc_info=error if error.__cause__ else None)


class SessionMiddleware(_Shell[S], BaseMiddleware):
    """Sessions for the sync ``TeleBot``: loads a session before the handlers and saves it after,
    one update per key at a time (arguments: see ``_Shell``).

    After the handlers the session is written only if its JSON changed. A handler that raised
    discards its changes; assigning a new object to ``obj.<attr>`` saves that object;
    assigning ``None`` deletes the record. A storage failure, an unreadable record or a session
    that cannot be encoded is logged with its key and never reaches telebot's loop; when it
    happens before the handlers, they do not run. An update whose key another update holds
    gives its worker back and runs once the key is free (see ``_dispatch``).
    """

    def _ready(self) -> None:
        self._handles: dict[int, Handle[S]] = {}  # id of an update's object -> its loaded session
        _dispatch._middlewares.add(self)  # the watcher looks at its _handles

    # -- telebot's hooks -------------------------------------------------------------------

    def pre_process(self, obj: Any, data: dict[str, Any]) -> CancelUpdate | None:
        if getattr(obj, "content_type", None) in _MIGRATIONS:
            self._follow_migration(obj)
        caller = sys._getframe(1)  # telebot's dispatch call when it called us directly (the usual case)
        try:
            key = self.get_session_key(obj)
            if key.__class__ is not str or not key:  # not the usual answer: None, or a mistake
                key = self.key_of(obj)
        except Exception as e:
            error = e if isinstance(e, SessionKeyError) else self._key_failure(obj, e)
            logger.error("telesession: %s; the update was not handled", error, exc_info=error.__cause__)
            return CancelUpdate()
        if key is None:
            setattr(obj, self.attr, None)
            data[self.attr] = None
            return None
        frame = caller if caller.f_code is _dispatch.DISPATCH_CODE else _dispatch_frame(caller)
        if self.lazy:  # nothing else until the handler asks (of)
            setattr(obj, self.attr, self._lazy)
            return None
        obj_id = id(obj)
        replaying = _dispatch.parked.get(obj_id) if _dispatch.parked else None  # this is a parked update's replay
        try:
            handle = self._handle_for(obj, key, frame, replaying)
        except SessionError as e:
            self._log_failure(key, e, "loading")
            return CancelUpdate()
        if not isinstance(handle, Handle):
            return handle  # parked
        _dispatch.watch(handle, self, replaying.replay if replaying is not None else frame, obj_id)
        setattr(obj, self.attr, handle.session)
        data[self.attr] = handle.session
        return None

    def _handle_for(self, obj: Any, key: str, frame: Any, replaying: _dispatch.Parked | None) -> Handle[S] | CancelUpdate:
        """``key`` held and loaded for the update running in ``frame``, or the CancelUpdate of parking it."""
        name = self.engine.prefix + key
        if replaying is None:  # the usual case: nothing was handed to this update while it was parked
            hold = self.engine.locks.try_acquire(name, frame)
        else:
            got = replaying.granted.pop(self, None)  # what parking got for it
            if got is not None and (got.hold.key if isinstance(got, Handle) else got.key) != name:
                # The key function gives another key this time: let the one it got go.
                got.release() if isinstance(got, Hold) else self.engine.abandon(got)
                got = None
            if isinstance(got, Handle):
                return got
            hold = got or self.engine.locks.try_acquire(name, frame)
        if hold is None:
            holder = self.engine.locks.holder(name)
            if holder is not None and (holder.owner is frame or (replaying is not None and holder.owner is replaying)):
                raise SessionKeyError(
                    f"session key {key!r} is already held by this update: two SessionMiddlewares on one "
                    "storage produce the same key; give them key functions (or prefixes) that differ",
                    key=key,
                )
            return _dispatch.park(self, obj, key, frame)
        handle = self.engine.load(hold, blocking=False)
        if handle is None:  # another process holds the key
            parked = _dispatch.park_elsewhere(self, obj, hold, frame)
            if parked is not None:
                return parked
            handle = self.engine.load(hold)
            assert handle is not None
        return handle

    def post_process(self, obj: Any, data: dict[str, Any], exception: BaseException | None) -> None:
        handle = self._handles.pop(id(obj), None)
        if handle is None:
            return  # no key, lazy and never loaded, or loading failed
        handle.anchor = None  # the frame holds the update object: no cycle left for the GC to find
        try:
            self.engine.finish(handle, getattr(obj, self.attr, None), save=exception is None)
        except SessionError as e:
            self._log_failure(handle.key, e, "saving")

    # -- sessions from code ------------------------------------------------------------------

    def _handle_of(self, obj: Any) -> Handle[S] | None:
        return self._handles.get(id(obj))

    def of(self, obj: Any) -> S:
        """The session of the update object ``obj``, inside its handler (or filter), typed as the session class.

        With ``lazy=True`` the first call loads it: it takes the key's lock (waiting, in this
        worker, if another update holds it) and keeps it until the update ends. Raises
        ``SessionKeyError`` when the update has no key (no chat, say), and ``SessionError``
        when ``obj`` did not pass through this middleware.
        """
        if getattr(obj, self.attr, None) is self._lazy:
            return self._load_lazily(obj)
        return self._loaded(obj)  # type: ignore[no-any-return]

    def _load_lazily(self, obj: Any) -> S:
        frame = _dispatch.dispatch_frame(sys._getframe(2))
        if frame is None:
            raise SessionError("a lazy session loads inside a handler or filter of the update, not after it (use sessions.edit elsewhere)")
        key = self.key_of(obj)
        if key is None:
            setattr(obj, self.attr, None)
            raise SessionKeyError(f"this {type(obj).__name__} has no session: get_session_key gave no key for it")
        obj_id = id(obj)
        replaying = _dispatch.parked.get(obj_id)
        handle = self.engine.load(self.engine.hold(key, frame))  # here a handler waits: it can't be parked
        assert handle is not None
        _dispatch.watch(handle, self, replaying.replay if replaying is not None else frame, obj_id)
        setattr(obj, self.attr, handle.session)
        return handle.session

    def edit(self, key: str | Any) -> contextlib.AbstractContextManager[S]:
        """A context manager holding the session of ``key`` as handlers do; saved on leaving if it changed.

        ``key``: a key (``per_chat.key(chat_id)``), or an update object whose key
        ``get_session_key`` gives (for next-step and reply handlers, which telebot runs without
        middlewares). A fresh ``initial`` session when none is stored; dropped if the block
        raises; across processes too where the storage locks. Waits while an update holds the
        key; inside that update's own handler it raises ``SessionKeyError`` instead (use ``of``).
        """
        return self.engine.edit(self._key(key))

    def get(self, key: str | Any) -> S | None:
        """A copy of the stored session of ``key`` (or update object), or ``None``; creates nothing, holds nothing."""
        return self.engine.get(self._key(key))

    def delete(self, key: str | Any) -> bool:
        """Remove the session of ``key`` (or update object), held as handlers hold it; ``False`` when there was none."""
        return self.engine.delete(self._key(key))

    def keys(self) -> Iterator[str]:
        """This middleware's stored keys, as its key function made them (without ``prefix``), and only its own."""
        return self.engine.keys()

    def sweep(self) -> int:
        """Remove records not saved for longer than ``ttl``; safe while the bot runs. Returns how many."""
        return self.engine.sweep()

    def move(self, old: str, new: str) -> bool:
        """Move a session to another key if that key has none (both held); returns whether it moved."""
        return self.engine.move(old, new)

    def _follow_migration(self, obj: Any) -> None:
        """A group became a supergroup (the service message in either chat): its sessions follow it."""
        try:
            found = self._moves(obj)
            for old_key, new_key in found[2] if found else ():
                if self.engine.move(old_key, new_key):
                    logger.info("telesession: chat %s became %s: session %r moved to %r", found[0], found[1], old_key, new_key)  # type: ignore[index]
        except (SessionError, NotImplementedError) as e:  # NotImplementedError: a storage that can't list its keys
            logger.error("telesession: moving the sessions of a group that became a supergroup failed: %s", e)


_MISSING: Any = object()


def _dispatch_frame(caller: Any) -> Any:
    frame = _dispatch.dispatch_frame(caller)
    if frame is None and _called_by_async_telebot(caller):
        raise TypeError(
            "SessionMiddleware is for the sync TeleBot; for AsyncTeleBot use "
            "telesession.asyncio.AsyncSessionMiddleware (same arguments)"
        )
    return frame if frame is not None else caller


def _called_by_async_telebot(caller: Any) -> bool:
    try:
        from telebot.async_telebot import AsyncTeleBot
    except ImportError:  # pragma: no cover - aiohttp missing
        return False
    return bool(caller is not None and caller.f_code is AsyncTeleBot._run_middlewares_and_handlers.__code__)


def _check_attr(attr: str) -> None:
    if not isinstance(attr, str) or not attr.isidentifier():
        raise ValueError(f"attr must be a Python identifier, got {attr!r}")
    if attr in _TELEBOT_NAMES:
        raise ValueError(f"attr={attr!r} collides with a name telebot itself puts in handler data (data, bot, state); choose another")
    for name, fields in _update_fields().items():
        if attr in fields:
            raise ValueError(f"attr={attr!r} would overwrite {name}.{attr} of telebot's update objects; choose another")


@functools.cache
def _update_fields() -> dict[str, frozenset[str]]:
    """The attributes telebot's update objects set in ``__init__`` (many are not parameters of it)."""
    found = {}
    for name in _UPDATE_CLASSES:
        cls = getattr(types, name, None)
        if cls is None:
            continue
        fields = set(inspect.signature(cls.__init__).parameters)
        with contextlib.suppress(OSError, TypeError):
            fields |= set(re.findall(r"self\.(\w+)\s*[:=]", inspect.getsource(cls.__init__)))
        found[name] = frozenset(fields)
    return found
