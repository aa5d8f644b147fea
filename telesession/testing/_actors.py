"""Simulated users and chats: they turn a person's actions into updates on a Bot API stand-in.

They use the stand-in through :class:`BotAPI`, the few public methods listed there, so this
module imports nothing of ``_api``: FakeBotAPI builds users and chats, never the other way round.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

from telebot import types

from . import _json
from ._match import Matching

# Reply keyboard buttons that send something other than their text, and what they ask for.
_SPECIAL_BUTTONS = {
    "request_contact": "the user's phone number",
    "request_location": "the user's location",
    "request_poll": "a poll the user creates",
    "request_users": "users the user picks",
    "request_user": "a user the user picks",
    "request_chat": "a chat the user picks",
    "web_app": "a Web App",
}


class BotAPI(Protocol):
    """What simulated users need from the Bot API stand-in; :class:`FakeBotAPI` is one."""

    @property
    def bot_user(self) -> _json.JSON: ...

    def push(self, update: _json.JSON | types.Update) -> int: ...

    def send_as(
        self, sender: _json.JSON | None, chat: _json.JSON | int, *, kind: str = "message", **fields: Any,
    ) -> types.Message: ...

    def message(self, chat_id: int, message_id: int) -> types.Message: ...

    def reply_keyboard(self, chat_id: int, message_id: int | None = None) -> _json.JSON | None: ...

    def wait_for_reply(
        self, chat_id: int, matching: Matching = None, *, timeout: float = 5.0, topic: int | None = None,
    ) -> types.Message: ...


def _reply_fields(reply_to: types.Message | None) -> dict[str, Any]:
    if reply_to is None:
        return {}
    return {"reply_to_message": _json.raw_message(reply_to)}


def _button_text(button: str | _json.JSON) -> str:
    # The Bot API accepts a bare string for a plain reply keyboard button.
    return button if isinstance(button, str) else str(button.get("text"))


def _describe(message: _json.JSON) -> str:
    text = message.get("text") or message.get("caption") or "<no text>"
    return repr(text if len(text) <= 60 else text[:57] + "...")


class FakeUser:
    """A Telegram user. Actions queue updates and return at once; use the waits to see the bot's answers.

    ``send``/``ask``/``wait_for_reply`` happen in the user's private chat with the bot; groups
    have their own :meth:`FakeChat.send` and :meth:`FakeChat.ask`.
    """

    def __init__(self, api: BotAPI, data: _json.JSON) -> None:
        self.api = api
        self.json = data

    @property
    def id(self) -> int:
        return int(self.json["id"])

    @property
    def first_name(self) -> str:
        return str(self.json["first_name"])

    @property
    def chat_id(self) -> int:
        """The id of the private chat with the bot (the user's own id)."""
        return self.id

    def __repr__(self) -> str:
        return f"FakeUser({self.id}, {self.first_name!r})"

    def send(self, text: str, *, reply_to: types.Message | None = None) -> types.Message:
        """Write ``text`` to the bot in private; a leading ``/`` makes it a command."""
        return self.api.send_as(self.json, _json.private_chat(self.json), text=text, **_reply_fields(reply_to))

    def ask(self, text: str, matching: Matching = None, *, timeout: float = 5.0) -> types.Message:
        """``send`` then ``wait_for_reply``: the bot's next unclaimed private message (that matches)."""
        self.send(text)
        return self.wait_for_reply(matching, timeout=timeout)

    def edit(self, message: types.Message, text: str) -> types.Message:
        """Edit a message this user sent in private: the bot gets an ``edited_message``."""
        data = _json.raw_message(message)
        data.update(text=text, edit_date=_json.now())
        data.pop("entities", None)
        entities = _json.command_entities(text)
        if entities:
            data["entities"] = entities
        self.api.push({"edited_message": data})
        return _json.parse(types.Message, data)

    def press(self, message: types.Message, button: str) -> types.CallbackQuery | types.Message:
        """Press a button the bot showed with ``message``: inline or on a reply keyboard.

        An inline button is found by its text or callback_data on ``message`` as passed, the
        version the user sees: pressing on an older version taps a button an edit has since
        removed, as a quick double tap does. The ``callback_query`` update carries the message
        as it is now, and the press returns that query, which the bot may answer once.

        A reply keyboard button (the keyboard the bot sent along with ``message``) is found by
        its text and sends that text as the user's message in the chat (and topic) of
        ``message``; the press returns that Message. It must still be the chat's keyboard: one
        sent later, or a ``ReplyKeyboardRemove``, takes it away. Buttons that share something
        else (``request_contact``, ``request_location``, ...) are refused: send such a message
        with :meth:`FakeBotAPI.send_as`.

        Raises AssertionError when the message was deleted (for an inline button), the button
        is not there (listing those that are), or it cannot be pressed.
        """
        seen = _json.raw_message(message)
        chat_id, message_id = int(seen["chat"]["id"]), int(seen["message_id"])
        inline = seen.get("reply_markup", {}).get("inline_keyboard")
        if inline:
            return self._press_inline(seen, [b for row in inline for b in row], button)
        keyboard = self.api.reply_keyboard(chat_id, message_id)
        if keyboard is None:
            raise AssertionError(f"no button {button!r} on message {message_id} ({_describe(seen)}); "
                                 f"its buttons (text, data): none")
        return self._press_reply(seen, keyboard, button)

    def _press_inline(self, seen: _json.JSON, buttons: list[_json.JSON], button: str) -> types.CallbackQuery:
        chat_id, message_id = int(seen["chat"]["id"]), int(seen["message_id"])
        try:
            current = _json.raw_message(self.api.message(chat_id, message_id))
        except AssertionError:
            raise AssertionError(f"cannot press {button!r}: message {message_id} in chat {chat_id} is gone") from None
        hit = [b for b in buttons if b.get("text") == button or b.get("callback_data") == button]
        if not hit:
            shown = [(b.get("text"), b.get("callback_data")) for b in buttons]
            raise AssertionError(f"no button {button!r} on message {message_id} ({_describe(seen)}); "
                                 f"its buttons (text, data): {shown}")
        if "callback_data" not in hit[0]:
            raise AssertionError(f"button {button!r} sends no callback query: {hit[0]!r}")
        query = _json.callback_query(from_user=self.json, data=hit[0]["callback_data"], message=copy.deepcopy(current))
        self.api.push({"callback_query": query})
        return _json.parse(types.CallbackQuery, query)

    def _press_reply(self, seen: _json.JSON, keyboard: _json.JSON, button: str) -> types.Message:
        chat_id, message_id = int(seen["chat"]["id"]), int(seen["message_id"])
        buttons = [b for row in keyboard.get("keyboard", []) for b in row]
        hit = [b for b in buttons if _button_text(b) == button]
        if not hit:
            raise AssertionError(f"no button {button!r} on the reply keyboard of message {message_id} "
                                 f"({_describe(seen)}); its buttons: {[_button_text(b) for b in buttons]}")
        if self.api.reply_keyboard(chat_id) != keyboard:
            raise AssertionError(f"cannot press {button!r}: the reply keyboard of message {message_id} in chat "
                                 f"{chat_id} is no longer shown (the bot sent another one, or removed it)")
        special = [key for key in _SPECIAL_BUTTONS if isinstance(hit[0], dict) and hit[0].get(key)]
        if special:
            raise AssertionError(f"button {button!r} shares {_SPECIAL_BUTTONS[special[0]]} ({special[0]}), which "
                                 f"simulated users do not do; send that message with api.send_as(user.json, "
                                 f"{chat_id}, ...)")
        return self.api.send_as(self.json, chat_id, text=button, thread_id=seen.get("message_thread_id"))

    def inline_query(self, query: str, *, offset: str = "") -> types.InlineQuery:
        """Type ``@bot query`` in some chat: an ``inline_query`` (answers arrive as answerInlineQuery calls)."""
        data = _json.inline_query(from_user=self.json, query=query, offset=offset, chat_type="sender")
        self.api.push({"inline_query": data})
        return _json.parse(types.InlineQuery, data)

    def choose_inline_result(self, result_id: str, *, query: str = "") -> types.ChosenInlineResult:
        """Pick result ``result_id`` of an inline query: a ``chosen_inline_result`` update."""
        data = _json.chosen_inline_result(from_user=self.json, result_id=result_id, query=query)
        self.api.push({"chosen_inline_result": data})
        return _json.parse(types.ChosenInlineResult, data)

    def wait_for_reply(self, matching: Matching = None, *, timeout: float = 5.0) -> types.Message:
        """:meth:`FakeBotAPI.wait_for_reply` in this user's private chat."""
        return self.api.wait_for_reply(self.id, matching, timeout=timeout)


class FakeChat:
    """A group, supergroup (forum or not) or channel the bot is in."""

    def __init__(self, api: BotAPI, data: _json.JSON) -> None:
        self.api = api
        self.json = data

    @property
    def id(self) -> int:
        return int(self.json["id"])

    @property
    def type(self) -> str:
        return str(self.json["type"])

    @property
    def title(self) -> str:
        return str(self.json["title"])

    def __repr__(self) -> str:
        return f"FakeChat({self.id}, {self.type}, {self.title!r})"

    def send(
        self, user: FakeUser, text: str, *, topic: int | None = None, reply_to: types.Message | None = None,
    ) -> types.Message:
        """``user`` writes ``text`` here; ``topic`` (a forum's ``message_thread_id``) puts it in a topic."""
        if self.type == "channel":
            raise ValueError("users do not write in channels; use post()")
        if topic is not None and not self.json.get("is_forum"):
            raise ValueError("topics need a forum: api.group(..., forum=True)")
        return self.api.send_as(user.json, self.json, text=text, thread_id=topic, **_reply_fields(reply_to))

    def ask(
        self, user: FakeUser, text: str, matching: Matching = None, *, timeout: float = 5.0, topic: int | None = None,
    ) -> types.Message:
        """``send`` then ``wait_for_reply``: the bot's next unclaimed message here (in ``topic``) that matches.

        The reply is the bot's next message in the chat, whoever it answers: in a busy group,
        pass ``matching`` to pick the one meant for ``user``.
        """
        self.send(user, text, topic=topic)
        return self.wait_for_reply(matching, timeout=timeout, topic=topic)

    def post(self, text: str) -> types.Message:
        """A channel post: a ``channel_post`` update with the channel as ``sender_chat`` and no user."""
        if self.type != "channel":
            raise ValueError("post() is for channels; use send(user, text) in groups")
        return self.api.send_as(None, self.json, kind="channel_post", text=text, sender_chat=self.json)

    def join(self, user: FakeUser) -> None:
        """``user`` joins: a ``new_chat_members`` service message and a ``chat_member`` update."""
        self.api.send_as(user.json, self.json, new_chat_members=[user.json])
        self._member_update("chat_member", user.json, user.json, "left", "member")

    def leave(self, user: FakeUser) -> None:
        """``user`` leaves: a ``left_chat_member`` service message and a ``chat_member`` update."""
        self.api.send_as(user.json, self.json, left_chat_member=user.json)
        self._member_update("chat_member", user.json, user.json, "member", "left")

    def add_bot(self, by: FakeUser) -> None:
        """``by`` adds the bot: a ``my_chat_member`` update (left -> member)."""
        self._member_update("my_chat_member", by.json, self.api.bot_user, "left", "member")

    def remove_bot(self, by: FakeUser) -> None:
        """``by`` removes the bot: a ``my_chat_member`` update (member -> kicked)."""
        self._member_update("my_chat_member", by.json, self.api.bot_user, "member", "kicked")

    def _member_update(self, kind: str, by: _json.JSON, subject: _json.JSON, old: str, new: str) -> None:
        self.api.push({kind: _json.chat_member_updated(chat=self.json, by=by, subject=subject,
                                                       old_status=old, new_status=new)})

    def wait_for_reply(
        self, matching: Matching = None, *, timeout: float = 5.0, topic: int | None = None,
    ) -> types.Message:
        """:meth:`FakeBotAPI.wait_for_reply` in this chat."""
        return self.api.wait_for_reply(self.id, matching, timeout=timeout, topic=topic)
