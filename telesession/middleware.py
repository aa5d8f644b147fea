"""SessionMiddleware: the only module that knows telebot's middleware hooks.

One update flows one way: key -> lock -> read -> decode -> handlers -> encode -> compare ->
write -> unlock. ``pre_process`` does the first half, ``post_process`` the second; when telebot
skips ``post_process`` the lock is released by ``_locks`` once the update is over.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
import weakref
from types import FrameType
from typing import Any, Callable, Generic, TypeVar

import orjson
from telebot import TeleBot
from telebot.handler_backends import BaseMiddleware, CancelUpdate

from ._locks import Hold, KeyLocks
from .codec import codec_for
from .errors import CorruptRecordError, DecodeError, EncodeError, SessionError, SessionKeyError
from .keys import KeyFunction, per_chat
from .storage.base import JSONValue, SessionStorage
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

# Stored records are wrapped, so that TTL and versioned migrations can come without moving data.
SCHEMA_VERSION = 0

# JSON as orjson writes it, but refusing what would not come back as it went in (datetimes,
# dataclasses, subclasses of str/int/dict/list) instead of silently turning it into strings.
_DUMPS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS

_DISPATCH_CODE = TeleBot._run_middlewares_and_handler.__code__
_tables: weakref.WeakKeyDictionary[SessionStorage, KeyLocks] = weakref.WeakKeyDictionary()
_tables_mutex = threading.Lock()


class SessionMiddleware(BaseMiddleware, Generic[S]):
    """Loads a session before the handlers and saves it after, one update per key at a time.

    ``initial``: a dataclass, or a zero-argument callable returning a dataclass instance or a
    dict; called anew for every new session (and once here, to learn the session's type).
    ``storage``: where sessions live; ``MemoryStorage()`` by default, which loses them on restart.
    ``get_session_key``: update object -> key, ``None`` for "no session" (then ``obj.<attr>`` is
    ``None`` and the handlers still run); see ``telesession.keys``. Default: per chat.
    ``attr``: the attribute set on the update object and the name of the handler parameter
    that receives the session (``def h(message, session)``).

    After the handlers the session is written only if its JSON changed. A handler that raised
    discards its changes; assigning a new object to ``obj.<attr>`` saves that object;
    assigning ``None`` deletes the record. A storage failure, an unreadable record or a session
    that cannot be encoded is logged with its key and never reaches telebot's loop; when it
    happens before the handlers, they do not run.
    """

    update_types = UPDATE_TYPES

    def __init__(
        self,
        *,
        initial: Callable[[], S],
        storage: SessionStorage | None = None,
        get_session_key: KeyFunction = per_chat,
        attr: str = "session",
    ):
        super().__init__()  # type: ignore[no-untyped-call]
        if storage is None:
            logger.warning("telesession: no storage given, using MemoryStorage: sessions are lost when the bot restarts")
            storage = MemoryStorage()
        if not attr.isidentifier():
            raise ValueError(f"attr must be a Python identifier, got {attr!r}")
        self.initial = initial
        self.storage = storage
        self.get_session_key = get_session_key
        self.attr = attr
        self._slot = f"telesession.{attr}"  # where post_process finds what pre_process loaded
        with _tables_mutex:
            self._locks = _tables.setdefault(storage, KeyLocks())
        # A storage that keeps the default lock() (no other process shares it) costs no call.
        self._cross_process = type(storage).lock is not SessionStorage.lock

        sample = initial()
        if isinstance(sample, dict):
            self._type: type = dict
            self._decode: Callable[[Any], Any] = orjson.loads  # of the loaded bytes: a deep copy
            self._encode: Callable[[Any], Any] = lambda session: session
        elif dataclasses.is_dataclass(sample) and not isinstance(sample, type):
            codec = codec_for(type(sample))
            self._type = type(sample)
            self._decode = codec.decode
            self._encode = codec.encode
        else:
            raise TypeError(f"initial must make a dataclass instance or a dict, it made {type(sample).__name__}")

    def __repr__(self) -> str:
        return f"SessionMiddleware({self._type.__name__}, {self.storage!r}, attr={self.attr!r})"

    # -- telebot's hooks -------------------------------------------------------------------

    def pre_process(self, obj: Any, data: dict[str, Any]) -> CancelUpdate | None:
        try:
            key = self.get_session_key(obj)
            if key is not None and (not isinstance(key, str) or not key):
                raise SessionKeyError(f"get_session_key returned {key!r}; a key is a non-empty str or None")
        except Exception:
            logger.exception("telesession: get_session_key failed on a %s; the update was not handled", type(obj).__name__)
            return CancelUpdate()
        if key is None:
            setattr(obj, self.attr, None)
            data[self.attr] = None
            return None

        try:
            caller = sys._getframe(1)  # telebot's dispatch call when it called us directly (the usual case)
            hold = self._locks.acquire(key, caller if caller.f_code is _DISPATCH_CODE else _update_frame(caller))
        except SessionError as e:
            logger.error("telesession: %s; the update was not handled", e)
            return CancelUpdate()
        try:
            if self._cross_process:
                lock = self.storage.lock(key)
                lock.__enter__()
                hold.on_release = lambda: lock.__exit__(None, None, None)
            session, stored, before = self._load(key)
        except Exception as e:
            hold.release()
            self._log_failure(key, e, "loading")
            return CancelUpdate()
        setattr(obj, self.attr, session)
        data[self.attr] = session
        data[self._slot] = (hold, stored, before)  # for post_process
        return None

    def post_process(self, obj: Any, data: dict[str, Any], exception: BaseException | None) -> None:
        loaded: tuple[Hold, dict[str, Any] | None, Any] | None = data.pop(self._slot, None)
        if loaded is None:
            return  # no key, or loading failed
        hold, stored, before = loaded
        try:
            if exception is None:
                if hold.held:
                    self._save(hold.key, getattr(obj, self.attr, None), stored, before)
                else:  # only in a child forked by the handler
                    logger.error("telesession: this process was forked while session %r was loaded; the parent "
                                 "saves it, this process's changes are dropped", hold.key)
        except Exception as e:
            self._log_failure(hold.key, e, "saving")
        finally:
            hold.release()

    # -- load and save ----------------------------------------------------------------------

    def _load(self, key: str) -> tuple[Any, dict[str, Any] | None, Any]:
        """``(session, stored data or None, before)``; ``before`` is what ``_save`` compares with."""
        record = self.storage.get(key)
        if record is None:
            session = self.initial()
            return session, None, self._dumps(key, self._encode(session))
        if not (isinstance(record, dict) and isinstance(stored := record.get("data"), dict)):
            raise CorruptRecordError(
                f"session {key!r} in {self.storage!r} is not a session record (no 'data' object); it was left as it is",
                key=key,
            )
        try:
            if self._type is dict:
                raw = self._dumps(key, stored)
                return orjson.loads(raw), stored, raw  # the loads: a deep copy
            return self._decode(stored), stored, stored  # decode shares no list or dict with stored
        except DecodeError as e:
            raise DecodeError(
                f"session {key!r} in {self.storage!r} does not fit {self._type.__name__}: {e}; it was left as it is",
                path=e.path, key=key, original_error=e,
            ) from e

    def _save(self, key: str, session: Any, stored: dict[str, Any] | None, before: Any) -> None:
        if session is None:
            if stored is not None:
                self.storage.delete(key)
            return
        if type(session) is not self._type:
            raise EncodeError(f"session {key!r} must be a {self._type.__name__}, a handler set a {type(session).__name__}", key=key)
        data = self._encode(session)
        if type(before) is bytes:  # a dict session (JSON-checked here), or a new one: compare the JSON
            changed = self._dumps(key, data) != before
        else:  # a stored dataclass session (before is its stored data); the codec made plain JSON
            if not before.keys() <= data.keys():
                # Keep fields this version of the class does not know (written by a newer deploy).
                data = {**data, **{name: value for name, value in before.items() if name not in data}}
            # Unequal values are a change; equal ones may still differ as JSON (1 and True, 1.0).
            changed = data != before or self._dumps(key, data) != self._dumps(key, before)
        if not changed:
            return
        try:
            self.storage.set(key, {"data": data, "schema": SCHEMA_VERSION, "saved_at": time.time()})
        except EncodeError:  # JSON can't hold it (an int over 64 bits): name the field, if it is one
            self._dumps(key, data)
            raise

    @staticmethod
    def _dumps(key: str, data: JSONValue) -> bytes:
        try:
            return orjson.dumps(data, option=_DUMPS)
        except TypeError as e:
            path, what = _unstorable(data)
            raise EncodeError(f"session {key!r} cannot be stored: {path or 'it'} holds {what}", path=path, key=key) from e

    def _log_failure(self, key: str, error: Exception, doing: str) -> None:
        consequence = "the update was not handled" if doing == "loading" else "its changes were not saved"
        if isinstance(error, SessionError):
            logger.error("telesession: %s; %s", error, consequence)
        else:
            logger.error("telesession: %s session %r in %r failed: %r; %s", doing, key, self.storage, error, consequence,
                         exc_info=error)


def _update_frame(caller: FrameType) -> FrameType:
    """The frame of the update whose ``pre_process`` was called from ``caller``: telebot's dispatch call.

    Found by its code object (a wrapper may stand between). When ``pre_process`` is called some
    other way (by hand, in a test), the caller's frame stands in: the hold then lasts while that
    caller runs.
    """
    frame: FrameType | None = caller
    while frame is not None:
        if frame.f_code is _DISPATCH_CODE:
            return frame
        frame = frame.f_back
    return caller


def _unstorable(value: Any, path: str = "") -> tuple[str, str]:
    """The path of the first part of ``value`` that JSON cannot hold, and what it is."""
    if isinstance(value, dict) and type(value) is dict:
        for name, item in value.items():
            if type(name) is not str:
                return path, f"a key {name!r} that is not a str"
            found = _unstorable(item, f"{path}.{name}" if path else name)
            if found[0] or found[1]:
                return found
        return "", ""
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            found = _unstorable(item, f"{path}[{i}]")
            if found[0] or found[1]:
                return found
        return "", ""
    if type(value) is int and not -(2**63) <= value < 2**64:
        return path, f"an integer too large for JSON ({value})"
    if value is None or type(value) in (str, int, float, bool):
        return "", ""
    return path, f"a {type(value).__name__}, which is not JSON"
