"""Session keys: which stored session an update belongs to.

A key function takes the object telebot hands to middlewares (a ``Message``, a
``CallbackQuery``, a ``ChatMemberUpdated``, ...) and returns a string, or ``None`` when the
update has no session of that kind. The helpers here build keys that never collide with each
other, so two middlewares sharing one storage (say per chat and per user) stay apart even in a
private chat, where the chat id equals the user id:

=====================  ==================  ==========================================
helper                 key                 ``None`` when
=====================  ==================  ==========================================
``per_chat``           ``"-100123"``       no chat (inline queries, polls, ...)
``per_user``           ``"user:42"``       no user (channel posts, anonymous actors)
``per_chat_user``      ``"-100123:42"``    no chat or no user
``per_topic``          ``"-100123:topic:7"``  no chat; ``:topic:main`` outside forum topics
=====================  ==================  ==========================================
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["KeyFunction", "chat_of", "user_of", "per_chat", "per_user", "per_chat_user", "per_topic"]

KeyFunction = Callable[[Any], "str | None"]


def chat_of(obj: Any) -> Any | None:
    """The ``telebot.types.Chat`` an update object belongs to, or ``None``.

    A callback query belongs to the chat of the message its button is on; an inline button
    pressed under an inline-mode message has no chat.
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
    # Some update kinds carry a user-like object without an id (none in 4.37), be strict.
    return user if getattr(user, "id", None) is not None else None


def per_chat(obj: Any) -> str | None:
    """One session per chat: everyone in a group shares it. The default key."""
    chat = chat_of(obj)
    return None if chat is None else str(chat.id)


def per_user(obj: Any) -> str | None:
    """One session per user, the same in every chat they write in."""
    user = user_of(obj)
    return None if user is None else f"user:{user.id}"


def per_chat_user(obj: Any) -> str | None:
    """One session per user in each chat: a user's session in a group differs from their private one."""
    chat, user = chat_of(obj), user_of(obj)
    return None if chat is None or user is None else f"{chat.id}:{user.id}"


def per_topic(obj: Any) -> str | None:
    """One session per forum topic; messages outside topics share the chat's ``main`` one."""
    chat = chat_of(obj)
    if chat is None:
        return None
    message = obj if hasattr(obj, "message_thread_id") else getattr(obj, "message", None)
    thread = getattr(message, "message_thread_id", None) if getattr(message, "is_topic_message", None) else None
    return f"{chat.id}:topic:{thread if thread is not None else 'main'}"
