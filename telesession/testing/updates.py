"""Factories of real ``telebot.types.Update`` objects, for unit tests without a server.

Each factory builds the Bot API JSON and parses it with ``Update.de_json``, so handlers and
middlewares see exactly what polling would give them. Update ids (and query ids) are unique in
the process. The JSON stays available as ``update.json`` (as telebot keeps ``Message.json``),
which lets :meth:`FakeBotAPI.push` send the same update over HTTP.

Ids follow Telegram's conventions: a positive chat id is a private chat (by default the user's
own), ``-100...`` a supergroup or channel, another negative id a basic group::

    bot.process_new_updates([updates.command("count", user_id=7)])
"""

from __future__ import annotations

from typing import Any

from telebot import types

from . import _json

__all__ = [
    "business_message",
    "callback_query",
    "channel_post",
    "chat_join_request",
    "chat_member",
    "chosen_inline_result",
    "command",
    "edited_message",
    "inline_query",
    "message",
    "message_reaction",
    "my_chat_member",
    "poll_answer",
    "topic_message",
]

#: The bot the factories pretend to be, for ``from`` of its own messages and my_chat_member.
BOT_USER: _json.JSON = _json.user(1000, "Test Bot", username="test_bot", is_bot=True)


def _update(kind: str, payload: _json.JSON, update_id: int | None) -> types.Update:
    raw = {"update_id": update_id if update_id is not None else _json.next_id(), kind: payload}
    update = _json.parse(types.Update, raw)
    update.json = raw  # type: ignore[attr-defined]  # what push() sends; telebot's Message has .json too
    return update


def _user(user_id: int, first_name: str | None) -> _json.JSON:
    return _json.user(user_id, first_name or f"User{user_id}")


def _chat(chat_id: int | None, user: _json.JSON, chat_type: str | None, thread_id: int | None) -> _json.JSON:
    if chat_id is None or chat_id == user["id"]:
        return _json.private_chat(user)
    return _json.chat(chat_id, chat_type, is_forum=thread_id is not None)


def _message_json(
    text: str,
    *,
    user_id: int,
    chat_id: int | None,
    chat_type: str | None,
    thread_id: int | None,
    message_id: int | None,
    first_name: str | None,
    **extra: Any,
) -> _json.JSON:
    sender = _user(user_id, first_name)
    return _json.message(
        message_id=message_id if message_id is not None else _json.next_id(),
        chat=_chat(chat_id, sender, chat_type, thread_id),
        from_user=sender,
        text=text,
        thread_id=thread_id,
        **extra,
    )


def message(
    text: str = "hello",
    *,
    user_id: int = 1,
    chat_id: int | None = None,
    chat_type: str | None = None,
    thread_id: int | None = None,
    message_id: int | None = None,
    first_name: str | None = None,
    update_id: int | None = None,
) -> types.Update:
    """A ``message`` update; in the user's private chat unless ``chat_id`` names another.

    ``thread_id`` makes it a forum topic message (``is_topic_message``, a forum chat). A text
    starting with ``/`` carries a ``bot_command`` entity.
    """
    payload = _message_json(
        text, user_id=user_id, chat_id=chat_id, chat_type=chat_type, thread_id=thread_id,
        message_id=message_id, first_name=first_name,
    )
    return _update("message", payload, update_id)


def command(name: str, args: str = "", **kwargs: Any) -> types.Update:
    """A ``/name args`` message update; ``name`` may carry its slash and ``@bot`` suffix or not."""
    text = "/" + name.lstrip("/") + (" " + args if args else "")
    return message(text, **kwargs)


def topic_message(text: str, *, chat_id: int, thread_id: int, **kwargs: Any) -> types.Update:
    """A message in a forum topic of supergroup ``chat_id`` (``message_thread_id`` = ``thread_id``)."""
    return message(text, chat_id=chat_id, chat_type="supergroup", thread_id=thread_id, **kwargs)


def edited_message(
    text: str,
    *,
    user_id: int = 1,
    chat_id: int | None = None,
    chat_type: str | None = None,
    message_id: int | None = None,
    update_id: int | None = None,
) -> types.Update:
    """An ``edited_message`` update: the message's new text, with ``edit_date`` set."""
    payload = _message_json(
        text, user_id=user_id, chat_id=chat_id, chat_type=chat_type, thread_id=None,
        message_id=message_id, first_name=None, edit_date=_json.now(),
    )
    return _update("edited_message", payload, update_id)


def channel_post(
    text: str,
    *,
    chat_id: int = -1001000000001,
    title: str = "Channel",
    edited: bool = False,
    message_id: int | None = None,
    update_id: int | None = None,
) -> types.Update:
    """A ``channel_post`` (or ``edited_channel_post``): no ``from_user``, the channel as ``sender_chat``."""
    channel = _json.chat(chat_id, "channel", title=title)
    extra: dict[str, Any] = {"edit_date": _json.now()} if edited else {}
    payload = _json.message(
        message_id=message_id if message_id is not None else _json.next_id(),
        chat=channel, sender_chat=channel, text=text, **extra,
    )
    return _update("edited_channel_post" if edited else "channel_post", payload, update_id)


def callback_query(
    data: str,
    *,
    user_id: int = 1,
    chat_id: int | None = None,
    message_id: int | None = None,
    message_text: str = "Choose:",
    inline_message_id: str | None = None,
    update_id: int | None = None,
) -> types.Update:
    """A button press carrying ``data``.

    By default the button sits on a bot message in the user's private chat. With
    ``inline_message_id`` it sits on a message sent in inline mode: then the query has no
    ``message`` (so ``call.message`` is None) and ``chat_id``/``message_id`` are ignored.
    """
    presser = _user(user_id, None)
    msg = None
    if inline_message_id is None:
        msg = _json.message(
            message_id=message_id if message_id is not None else _json.next_id(),
            chat=_chat(chat_id, presser, None, None), from_user=BOT_USER, text=message_text,
            reply_markup={"inline_keyboard": [[{"text": data, "callback_data": data}]]},
        )
    payload = _json.callback_query(from_user=presser, data=data, message=msg, inline_message_id=inline_message_id)
    return _update("callback_query", payload, update_id)


def inline_query(
    query: str, *, user_id: int = 1, offset: str = "", chat_type: str | None = None,
    update_id: int | None = None,
) -> types.Update:
    """An ``inline_query``: the user typed ``@bot query`` somewhere; it has no chat."""
    payload = _json.inline_query(from_user=_user(user_id, None), query=query, offset=offset, chat_type=chat_type)
    return _update("inline_query", payload, update_id)


def chosen_inline_result(
    result_id: str, *, user_id: int = 1, query: str = "", inline_message_id: str | None = None,
    update_id: int | None = None,
) -> types.Update:
    """A ``chosen_inline_result`` (telebot's middlewares call this type ``chosen_inline_query``)."""
    payload = _json.chosen_inline_result(
        from_user=_user(user_id, None), result_id=result_id, query=query, inline_message_id=inline_message_id,
    )
    return _update("chosen_inline_result", payload, update_id)


def poll_answer(
    poll_id: str, option_ids: list[int], *, user_id: int | None = 1, voter_chat_id: int | None = None,
    update_id: int | None = None,
) -> types.Update:
    """A ``poll_answer``; with ``voter_chat_id`` (and ``user_id=None``) an anonymous vote of a chat."""
    payload: _json.JSON = {
        "poll_id": poll_id,
        "option_ids": list(option_ids),
        "option_persistent_ids": [str(i) for i in option_ids],
    }
    if user_id is not None:
        payload["user"] = _user(user_id, None)
    if voter_chat_id is not None:
        payload["voter_chat"] = _json.chat(voter_chat_id)
    return _update("poll_answer", payload, update_id)


def my_chat_member(
    *, chat_id: int, by_user_id: int = 1, old_status: str = "left", new_status: str = "member",
    chat_type: str | None = None, update_id: int | None = None,
) -> types.Update:
    """The bot's own membership changed (added to a group by default) by ``by_user_id``.

    Statuses: member, left or kicked.
    """
    payload = _json.chat_member_updated(
        chat=_json.chat(chat_id, chat_type), by=_user(by_user_id, None), subject=BOT_USER,
        old_status=old_status, new_status=new_status,
    )
    return _update("my_chat_member", payload, update_id)


def chat_member(
    *, chat_id: int, user_id: int = 1, by_user_id: int | None = None, old_status: str = "left",
    new_status: str = "member", chat_type: str | None = None, update_id: int | None = None,
) -> types.Update:
    """A member's status changed (joined by default); ``by_user_id`` defaults to the member.

    Statuses: member, left or kicked. Telegram only sends these to admins that ask for them in
    ``allowed_updates``.
    """
    subject = _user(user_id, None)
    by = subject if by_user_id is None else _user(by_user_id, None)
    payload = _json.chat_member_updated(
        chat=_json.chat(chat_id, chat_type), by=by, subject=subject, old_status=old_status, new_status=new_status,
    )
    return _update("chat_member", payload, update_id)


def chat_join_request(*, chat_id: int, user_id: int = 1, update_id: int | None = None) -> types.Update:
    """A ``chat_join_request`` from ``user_id`` to ``chat_id``."""
    sender = _user(user_id, None)
    payload = {"chat": _json.chat(chat_id), "from": sender, "user_chat_id": user_id, "date": _json.now()}
    return _update("chat_join_request", payload, update_id)


def message_reaction(
    *, chat_id: int, message_id: int, user_id: int = 1, emoji: str = "\N{THUMBS UP SIGN}",
    old_emoji: str | None = None, update_id: int | None = None,
) -> types.Update:
    """A ``message_reaction``: ``user_id`` set ``emoji`` (replacing ``old_emoji``) on a message."""
    payload = {
        "chat": _json.chat(chat_id),
        "message_id": message_id,
        "user": _user(user_id, None),
        "date": _json.now(),
        "old_reaction": [{"type": "emoji", "emoji": old_emoji}] if old_emoji else [],
        "new_reaction": [{"type": "emoji", "emoji": emoji}],
    }
    return _update("message_reaction", payload, update_id)


def business_message(
    text: str, *, user_id: int = 1, chat_id: int | None = None, connection_id: str = "business-1",
    update_id: int | None = None,
) -> types.Update:
    """A ``business_message``: a message in a chat of a business account the bot manages."""
    payload = _message_json(
        text, user_id=user_id, chat_id=chat_id, chat_type=None, thread_id=None, message_id=None,
        first_name=None, business_connection_id=connection_id,
    )
    return _update("business_message", payload, update_id)
