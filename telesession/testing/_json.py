"""Builders of Bot API JSON objects, shared by the update factories and the fake Bot API.

Everything here returns plain dicts shaped like the Bot API's JSON, so the same builder feeds
``types.Update.de_json`` in unit tests and the HTTP answers of the fake server.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
import json
from typing import Any, TypeVar, cast

from telebot import types

JSON = dict[str, Any]
T = TypeVar("T")

_counter = itertools.count(1)
_counter_lock = threading.Lock()


def next_id() -> int:
    """A process-wide increasing number: update ids, query ids and the like never repeat."""
    with _counter_lock:
        return next(_counter)


def now() -> int:
    return int(time.time())


def user(
    user_id: int,
    first_name: str = "User",
    *,
    username: str | None = None,
    last_name: str | None = None,
    is_bot: bool = False,
    language_code: str | None = "en",
) -> JSON:
    out: JSON = {"id": user_id, "is_bot": is_bot, "first_name": first_name}
    if last_name is not None:
        out["last_name"] = last_name
    if username is not None:
        out["username"] = username
    if language_code is not None and not is_bot:
        out["language_code"] = language_code
    return out


def chat(
    chat_id: int,
    chat_type: str | None = None,
    *,
    title: str | None = None,
    first_name: str | None = None,
    username: str | None = None,
    is_forum: bool = False,
) -> JSON:
    """A Chat; without ``chat_type`` the id decides, as Telegram's ids do.

    Positive ids are private chats, ``-100...`` ids supergroups (or channels), other negative
    ids basic groups.
    """
    if chat_type is None:
        chat_type = guess_chat_type(chat_id)
    out: JSON = {"id": chat_id, "type": chat_type}
    if chat_type == "private":
        out["first_name"] = first_name or "User"
    else:
        out["title"] = title or f"Chat {chat_id}"
    if username is not None:
        out["username"] = username
    if is_forum:
        out["is_forum"] = True
    return out


def guess_chat_type(chat_id: int) -> str:
    if chat_id > 0:
        return "private"
    return "supergroup" if str(chat_id).startswith("-100") else "group"


def private_chat(of: JSON) -> JSON:
    """The private chat between the bot and a user: its id is the user's id."""
    return chat(of["id"], "private", first_name=of["first_name"], username=of.get("username"))


def command_entities(text: str) -> list[JSON]:
    """A ``bot_command`` entity when the text starts with a command, as Telegram adds one."""
    if not text.startswith("/") or len(text) < 2:
        return []
    length = len(text.split(maxsplit=1)[0])
    # Entity offsets count UTF-16 code units; a command is ASCII, so characters will do.
    return [{"type": "bot_command", "offset": 0, "length": length}]


def message(
    *,
    message_id: int,
    chat: JSON,
    from_user: JSON | None = None,
    text: str | None = None,
    thread_id: int | None = None,
    sender_chat: JSON | None = None,
    date: int | None = None,
    **extra: Any,
) -> JSON:
    """A Message; ``text`` gets command entities; ``thread_id`` makes it a forum topic message."""
    out: JSON = {"message_id": message_id, "date": date if date is not None else now(), "chat": chat}
    if from_user is not None:
        out["from"] = from_user
    if sender_chat is not None:
        out["sender_chat"] = sender_chat
    if text is not None:
        out["text"] = text
        entities = command_entities(text)
        if entities:
            out["entities"] = entities
    if thread_id is not None:
        out["message_thread_id"] = thread_id
        out["is_topic_message"] = True
    out.update(extra)
    return out


def member(of: JSON, status: str) -> JSON:
    """A ChatMember of one of the statuses that need no extra fields: member, left, kicked."""
    out: JSON = {"user": of, "status": status}
    if status == "kicked":
        out["until_date"] = 0
    elif status not in ("member", "left"):
        raise ValueError(f"status {status!r} is not supported here; use member, left or kicked")
    return out


def chat_member_updated(
    *, chat: JSON, by: JSON, subject: JSON, old_status: str, new_status: str
) -> JSON:
    return {
        "chat": chat,
        "from": by,
        "date": now(),
        "old_chat_member": member(subject, old_status),
        "new_chat_member": member(subject, new_status),
    }


def callback_query(
    *, from_user: JSON, data: str, message: JSON | None = None, inline_message_id: str | None = None
) -> JSON:
    out: JSON = {"id": str(next_id()), "from": from_user, "data": data}
    if message is not None:
        out["message"] = message
        out["chat_instance"] = f"ci{message['chat']['id']}"
    else:
        out["chat_instance"] = f"ci{from_user['id']}"
    if inline_message_id is not None:
        out["inline_message_id"] = inline_message_id
    return out


def inline_query(*, from_user: JSON, query: str, offset: str = "", chat_type: str | None = None) -> JSON:
    out: JSON = {"id": str(next_id()), "from": from_user, "query": query, "offset": offset}
    if chat_type is not None:
        out["chat_type"] = chat_type
    return out


def chosen_inline_result(
    *, from_user: JSON, result_id: str, query: str = "", inline_message_id: str | None = None
) -> JSON:
    out: JSON = {"result_id": result_id, "from": from_user, "query": query}
    if inline_message_id is not None:
        out["inline_message_id"] = inline_message_id
    return out


def update_type(update: JSON) -> str:
    """The one field of an update besides ``update_id``: its type, as ``allowed_updates`` names it."""
    for key in update:
        if key != "update_id":
            return key
    raise ValueError("an update needs one field besides update_id")


def raw_message(message: types.Message | JSON) -> JSON:
    """The JSON of a Message: telebot keeps what it parsed in ``.json`` (a dict, or a str)."""
    if isinstance(message, types.Message):
        raw = message.json
        return dict(json.loads(raw) if isinstance(raw, str) else raw)
    return dict(message)


def parse(cls: type[T], data: JSON) -> T:
    """``cls.de_json`` on a deep copy: telebot keeps (and may change) the dicts it parses."""
    parser: Any = cls  # telebot's de_json methods carry no annotations
    return cast(T, parser.de_json(copy.deepcopy(data)))
