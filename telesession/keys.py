"""Session keys: which stored session an update belongs to.

A key function takes the object telebot hands to middlewares (a ``Message``, a
``CallbackQuery``, a ``ChatMemberUpdated``, ...) and returns a string, or ``None`` when the
update has no session of that kind. The ready-made ones are objects you call like functions;
they also make keys from ids (for jobs and admin code), and they never collide with each
other, so two middlewares sharing one storage (say per chat and per user) stay apart even in a
private chat, where the chat id equals the user id:

=================  ====================================  =======================================
helper             key                                   ``None`` when
=================  ====================================  =======================================
``per_chat``       ``-100123``                           no chat (inline queries, polls, ...)
``per_user``       ``user:42``                           no user (channel posts, anonymous actors)
``per_chat_user``  ``-100123:42``                        no chat or no user
``per_topic``      ``-100123:topic:7`` (``:topic:main``  no chat
                   outside forum topics)
=================  ====================================  =======================================

Messages a bot gets through a business connection belong to a chat of that connection, not
to the bot's own chat with the same id: their keys start with ``business:<connection id>:``
(``per_user`` keys stay the same: a person is one person).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "KeyFunction", "SessionKey", "chat_of", "user_of", "business_connection_of",
    "per_chat", "per_user", "per_chat_user", "per_topic",
]  # fmt: skip

KeyFunction = Callable[[Any], "str | None"]

_BUSINESS = r"(?:business:[^:]*:)?"
_CHAT = r"-?\d+"


def chat_of(obj: Any) -> Any | None:
    """The ``telebot.types.Chat`` an update object belongs to, or ``None``.

    A callback query belongs to the chat of the message its button is on; a button pressed
    under an inline-mode message has no chat.
    """
    chat = getattr(obj, "chat", None)
    if chat is None:
        chat = getattr(getattr(obj, "message", None), "chat", None)
    return chat


def user_of(obj: Any) -> Any | None:
    """The ``telebot.types.User`` who caused an update, or ``None`` (channel posts, anonymous votes)."""
    user = getattr(obj, "from_user", None)
    if user is None:
        user = getattr(obj, "user", None)
    # Some update kinds carry a user-like object without an id (none in 4.37): be strict.
    return user if getattr(user, "id", None) is not None else None


def business_connection_of(obj: Any) -> str | None:
    """The business connection an update came through (a business message, a button under one), or ``None``."""
    connection = getattr(obj, "business_connection_id", None)
    if connection is None:
        connection = getattr(getattr(obj, "message", None), "business_connection_id", None)
    return connection if isinstance(connection, str) else None


def _scope(chat_id: int, business_connection_id: str | None) -> str:
    if business_connection_id is None:
        return str(int(chat_id))
    # Escaped so that a ':' in an id can't make two keys alike.
    return f"business:{business_connection_id.replace('%', '%25').replace(':', '%3A')}:{int(chat_id)}"


class SessionKey:
    """A ready-made key function: call it with an update object; ``key(...)`` makes a key from ids.

    ``pattern`` matches exactly the keys it makes (so a middleware lists only its own).
    ``moves(old_chat_id, new_chat_id, keys)`` says which keys follow a group that became a
    supergroup (``keys`` lists the stored ones, called only when needed).
    """

    pattern: re.Pattern[str]

    def __call__(self, obj: Any) -> str | None:
        raise NotImplementedError

    def moves(self, old_chat_id: int, new_chat_id: int, keys: Callable[[], Iterable[str]]) -> list[tuple[str, str]]:
        return []

    def __repr__(self) -> str:
        return f"telesession.{type(self).__name__.lstrip('_').lower()}"


class _PerChat(SessionKey):
    """One session per chat: everyone in a group shares it. The default key."""

    pattern = re.compile(_BUSINESS + _CHAT)

    def __call__(self, obj: Any) -> str | None:
        chat = getattr(obj, "chat", None)
        if chat is not None and getattr(obj, "business_connection_id", None) is None:
            return str(chat.id)  # a message in a chat of the bot's own: every update pays this call
        chat = chat_of(obj)
        return None if chat is None else _scope(chat.id, business_connection_of(obj))

    def key(self, chat_id: int, *, business_connection_id: str | None = None) -> str:
        """The key of chat ``chat_id`` (of a business connection when given)."""
        return _scope(chat_id, business_connection_id)

    def moves(self, old_chat_id: int, new_chat_id: int, keys: Callable[[], Iterable[str]]) -> list[tuple[str, str]]:
        return [(self.key(old_chat_id), self.key(new_chat_id))]


class _PerUser(SessionKey):
    """One session per user, the same in every chat they write in."""

    pattern = re.compile(r"user:\d+")

    def __call__(self, obj: Any) -> str | None:
        user = user_of(obj)
        return None if user is None else f"user:{user.id}"

    def key(self, user_id: int) -> str:
        """The key of user ``user_id``."""
        return f"user:{int(user_id)}"


class _PerChatUser(SessionKey):
    """One session per user in each chat: a user's session in a group differs from their private one."""

    pattern = re.compile(_BUSINESS + _CHAT + r":\d+")

    def __call__(self, obj: Any) -> str | None:
        chat, user = chat_of(obj), user_of(obj)
        if chat is None or user is None:
            return None
        return f"{_scope(chat.id, business_connection_of(obj))}:{user.id}"

    def key(self, chat_id: int, user_id: int, *, business_connection_id: str | None = None) -> str:
        """The key of user ``user_id`` in chat ``chat_id``."""
        return f"{_scope(chat_id, business_connection_id)}:{int(user_id)}"

    def moves(self, old_chat_id: int, new_chat_id: int, keys: Callable[[], Iterable[str]]) -> list[tuple[str, str]]:
        head = f"{int(old_chat_id)}:"
        return [(k, f"{int(new_chat_id)}:{k[len(head):]}") for k in keys() if k.startswith(head) and self.pattern.fullmatch(k)]


class _PerTopic(SessionKey):
    """One session per forum topic; messages outside topics share the chat's ``main`` one."""

    pattern = re.compile(_BUSINESS + _CHAT + r":topic:(?:\d+|main)")

    def __call__(self, obj: Any) -> str | None:
        chat = chat_of(obj)
        if chat is None:
            return None
        message = obj if hasattr(obj, "message_thread_id") else getattr(obj, "message", None)
        thread = getattr(message, "message_thread_id", None) if getattr(message, "is_topic_message", None) else None
        return self.key(chat.id, thread, business_connection_id=business_connection_of(obj))

    def key(self, chat_id: int, thread_id: int | None = None, *, business_connection_id: str | None = None) -> str:
        """The key of topic ``thread_id`` of chat ``chat_id`` (``None``: outside topics)."""
        return f"{_scope(chat_id, business_connection_id)}:topic:{'main' if thread_id is None else int(thread_id)}"

    def moves(self, old_chat_id: int, new_chat_id: int, keys: Callable[[], Iterable[str]]) -> list[tuple[str, str]]:
        head = f"{int(old_chat_id)}:topic:"
        return [(k, f"{int(new_chat_id)}:topic:{k[len(head):]}") for k in keys() if k.startswith(head)]


per_chat = _PerChat()
per_user = _PerUser()
per_chat_user = _PerChatUser()
per_topic = _PerTopic()
