"""Simulated users and chats: they turn actions into updates on a FakeBotAPI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telebot import types

from . import _json

if TYPE_CHECKING:
    from ._api import FakeBotAPI, Matching


def _reply_fields(reply_to: types.Message | None) -> dict[str, Any]:
    if reply_to is None:
        return {}
    return {"reply_to_message": _json.raw_message(reply_to)}


class FakeUser:
    """A Telegram user. Actions queue updates and return at once; use the waits to see the bot's answers.

    ``send``/``ask``/``wait_for_reply`` happen in the user's private chat with the bot; groups
    have their own :meth:`FakeChat.send`.
    """

    def __init__(self, api: FakeBotAPI, data: _json.JSON) -> None:
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
        chat = _json.private_chat(self.json)
        return self.api._user_message(chat, self.json, text=text, **_reply_fields(reply_to))

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

    def press(self, message: types.Message, button: str) -> types.CallbackQuery:
        """Press the inline button whose text or callback_data is ``button`` on a bot's message.

        The button is looked for on ``message`` as passed, the version the user sees: pressing
        on an older version taps a button an edit has since removed, as a quick double tap does.
        The query carries the message as it is now. Raises AssertionError when the message was
        deleted or shows no such button (listing those it has). The bot may answer the returned
        query (``answer_callback_query``) once.
        """
        return self.api._press(self.json, message, button)

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

    def __init__(self, api: FakeBotAPI, data: _json.JSON) -> None:
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
        return self.api._user_message(self.json, user.json, text=text, thread_id=topic, **_reply_fields(reply_to))

    def post(self, text: str) -> types.Message:
        """A channel post: a ``channel_post`` update with the channel as ``sender_chat`` and no user."""
        if self.type != "channel":
            raise ValueError("post() is for channels; use send(user, text) in groups")
        return self.api._user_message(self.json, None, "channel_post", text=text, sender_chat=self.json)

    def join(self, user: FakeUser) -> None:
        """``user`` joins: a ``new_chat_members`` service message and a ``chat_member`` update."""
        self.api._user_message(self.json, user.json, new_chat_members=[user.json])
        self._member_update("chat_member", user.json, user.json, "left", "member")

    def leave(self, user: FakeUser) -> None:
        """``user`` leaves: a ``left_chat_member`` service message and a ``chat_member`` update."""
        self.api._user_message(self.json, user.json, left_chat_member=user.json)
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
