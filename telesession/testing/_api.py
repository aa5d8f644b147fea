"""FakeBotAPI: a Bot API stand-in on 127.0.0.1 that telebot's real HTTP clients talk to."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from telebot import types

from . import _json, _match
from ._actors import FakeChat, FakeUser
from ._http import Server
from ._match import Matching

JSON = _json.JSON

# Telegram leaves these out of getUpdates unless allowed_updates names them.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

# send* methods that return a Message with a file: the field the message carries it in.
_MEDIA = {
    "sendPhoto": "photo", "sendDocument": "document", "sendAudio": "audio", "sendVideo": "video",
    "sendVoice": "voice", "sendAnimation": "animation", "sendVideoNote": "video_note",
    "sendSticker": "sticker",
}


@dataclass(frozen=True)
class Call:
    """One request the bot made.

    ``params`` merges the query string and the body; values are decoded from their wire form
    (``chat_id`` is an int, ``reply_markup`` a dict) except texts and string ids, which stay
    strings. ``time`` is ``time.monotonic()`` at arrival; ``status`` the HTTP status answered.
    """

    method: str
    params: dict[str, Any]
    token: str
    time: float
    status: int = 200

    def __repr__(self) -> str:
        return f"Call({self.method} {self.params!r} -> {self.status})"


@dataclass
class _Out:
    """A message the bot sent or edited, waiting to be claimed by wait_for_reply/wait_for_edit."""

    kind: str  # "sent" or "edited"
    message: JSON
    claimed: bool = False


@dataclass
class _Failure:
    status: int
    description: str
    times: int
    retry_after: float | None = None


@dataclass
class _State:
    updates: list[JSON] = field(default_factory=list)  # unconfirmed, in update_id order
    next_update_id: int = 1
    allowed: list[str] | None = None
    calls: list[Call] = field(default_factory=list)
    chats: dict[int, JSON] = field(default_factory=dict)
    last_message_id: dict[int, int] = field(default_factory=dict)
    messages: dict[tuple[int, int], JSON] = field(default_factory=dict)  # every live message
    # Reply keyboards are not part of a Message (Telegram returns none): what users see is kept
    # here, the keyboard each bot message brought and the one each chat shows now.
    keyboards_sent: dict[tuple[int, int], JSON] = field(default_factory=dict)
    keyboard_shown: dict[int, JSON] = field(default_factory=dict)
    outbox: dict[int, list[_Out]] = field(default_factory=dict)  # per chat, in order
    open_queries: set[str] = field(default_factory=set)  # callback queries not answered yet
    failures: dict[str, list[_Failure]] = field(default_factory=dict)  # lower-case method ->
    flood_until: dict[str, float] = field(default_factory=dict)
    released: set[str] = field(default_factory=set)  # tokens whose getUpdates answer at once
    token: str = ""  # the latest token seen: who "the bot" is
    files: dict[str, bytes] = field(default_factory=dict)


class _ApiError(Exception):
    def __init__(self, status: int, description: str, retry_after: float | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def payload(self) -> JSON:
        out: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            out["parameters"] = {"retry_after": self.retry_after}
        return out


class FakeBotAPI:
    """A Bot API stand-in: an HTTP server on 127.0.0.1 (a free port) in a background thread.

    It keeps an update queue that simulated users fill (:meth:`user`, :meth:`group`,
    :meth:`channel`, :meth:`push`) and that ``getUpdates`` serves with Telegram's offset and
    long-poll rules; it stores what the bot sends per chat, inline buttons and reply keyboards
    included, so users can press them; it records every call; and it can fail calls on demand
    (:meth:`fail_next`, :meth:`flood_wait`). TeleBot's and AsyncTeleBot's HTTP clients get the
    same answers. Point telebot at it with :func:`patched_api_url`, or run a bot against it
    with :func:`serve_bot` or :func:`serve_async_bot`.

    One bot at a time: every token shares the one update queue. ``sendMessage``,
    ``editMessageText``, ``editMessageReplyMarkup``, ``deleteMessage`` and
    ``answerCallbackQuery`` answer and fail like Telegram (``message is not modified``,
    ``message to edit not found``, ``query is too old``); other ``send*`` methods return a bare
    message; any other method answers ``true``.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, *, bot_username: str = "test_bot", bot_name: str = "Test Bot") -> None:
        self.bot_username = bot_username
        self.bot_name = bot_name
        self._cond = threading.Condition()
        self._state = _State()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._next_user_id = 100001
        self._next_group_id = 1
        self._handlers: dict[str, Callable[[str, dict[str, Any]], Any]] = {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "answercallbackquery": self._answer_callback_query,
            "deletemessage": self._delete_message,
            "getfile": self._get_file,
            "getwebhookinfo": lambda token, p: {"url": "", "has_custom_certificate": False,
                                                "pending_update_count": len(self._state.updates)},
        }

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> FakeBotAPI:
        """Listen on a free port of 127.0.0.1 and serve in a daemon thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("FakeBotAPI is already started")
        self._stopping = False
        self._server = Server(self._dispatch, self._download)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"FakeBotAPI:{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Wake every long poll (they answer ``[]``), stop serving and join the server thread.

        Idempotent. State (calls, messages) stays readable after stopping.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> FakeBotAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeBotAPI is not started")
        return int(self._server.server_address[1])

    @property
    def api_url(self) -> str:
        """The value for ``telebot.apihelper.API_URL`` (``{0}`` the token, ``{1}`` the method)."""
        return f"http://127.0.0.1:{self.port}/bot{{0}}/{{1}}"

    @property
    def file_url(self) -> str:
        """The value for ``telebot.apihelper.FILE_URL`` (``{0}`` the token, ``{1}`` the path)."""
        return f"http://127.0.0.1:{self.port}/file/bot{{0}}/{{1}}"

    # -- simulated people -------------------------------------------------------------------

    def user(
        self,
        user_id: int | None = None,
        first_name: str | None = None,
        *,
        username: str | None = None,
        last_name: str | None = None,
        language_code: str = "en",
    ) -> FakeUser:
        """A user who talks to the bot; their private chat with it has their id.

        Without ``user_id`` the next free id (from 100001) is used; ``first_name`` defaults to
        ``User<id>``.
        """
        with self._cond:
            if user_id is None:
                user_id = self._next_user_id
                self._next_user_id += 1
            data = _json.user(user_id, first_name or f"User{user_id}", username=username,
                              last_name=last_name, language_code=language_code)
            self._state.chats[user_id] = _json.private_chat(data)
        return FakeUser(self, data)

    def group(
        self, title: str = "Group", *, chat_id: int | None = None, supergroup: bool = False,
        forum: bool = False,
    ) -> FakeChat:
        """A group chat. ``forum=True`` makes a supergroup with topics (implies ``supergroup``)."""
        supergroup = supergroup or forum
        with self._cond:
            if chat_id is None:
                n = self._next_group_id
                self._next_group_id += 1
                chat_id = -1001000000000 - n if supergroup else -4000 - n
            data = _json.chat(chat_id, "supergroup" if supergroup else "group", title=title, is_forum=forum)
            self._state.chats[chat_id] = data
        return FakeChat(self, data)

    def channel(self, title: str = "Channel", *, chat_id: int | None = None, username: str | None = None) -> FakeChat:
        """A channel; its posts arrive as ``channel_post`` updates without a sender user."""
        with self._cond:
            if chat_id is None:
                chat_id = -1002000000000 - self._next_group_id
                self._next_group_id += 1
            data = _json.chat(chat_id, "channel", title=title, username=username)
            self._state.chats[chat_id] = data
        return FakeChat(self, data)

    @property
    def bot_user(self) -> JSON:
        """The bot as a User JSON object: its id is the one in the latest token seen (1000 before any)."""
        with self._cond:
            return self._bot_user(self._state.token)

    def _bot_user(self, token: str) -> JSON:
        head = token.split(":", 1)[0]
        bot_id = int(head) if head.isdigit() else 1000
        data = _json.user(bot_id, self.bot_name, username=self.bot_username, is_bot=True)
        data.update(can_join_groups=True, can_read_all_group_messages=False, supports_inline_queries=True)
        return data

    # -- updates in -------------------------------------------------------------------------

    def push(self, update: JSON | types.Update) -> int:
        """Queue an update for ``getUpdates``; returns the ``update_id`` it was given.

        Accepts the Bot API JSON of an update (its ``update_id`` is replaced so ids keep
        increasing) or an Update from :mod:`telesession.testing.updates`. A pushed
        ``callback_query`` can be answered once with ``answerCallbackQuery``.
        """
        raw = getattr(update, "json", update) if isinstance(update, types.Update) else update
        if not isinstance(raw, Mapping):
            raise TypeError("push() takes an update's JSON or an Update built by telesession.testing.updates")
        with self._cond:
            data = copy.deepcopy(dict(raw))
            data["update_id"] = self._state.next_update_id
            self._state.next_update_id += 1
            _json.update_type(data)  # fail here, not in the bot, on an empty update
            for key in ("message", "channel_post", "business_message"):
                if key in data:
                    self._keep(data[key])
            if "callback_query" in data:
                self._state.open_queries.add(str(data["callback_query"]["id"]))
            self._state.updates.append(data)
            self._cond.notify_all()
            return int(data["update_id"])

    def send_as(
        self, sender: JSON | None, chat: JSON | int, *, kind: str = "message", **fields: Any,
    ) -> types.Message:
        """Queue a message that ``sender`` (a User's JSON, None in a channel) writes in ``chat``.

        ``chat`` is a Chat's JSON or the id of a chat the api knows (one it does not know is
        made up from the id). The message gets the chat's next ``message_id``; ``fields`` are
        its other fields (``text=``, which gets command entities, ``thread_id=`` for a forum
        topic, ``contact=``, ``photo=``, ...). ``kind`` is the update type: ``message``,
        ``channel_post``, ``business_message``... This is what :class:`FakeUser` and
        :class:`FakeChat` do; call it for what they lack.
        """
        with self._cond:
            chat_json = self._chat(chat) if isinstance(chat, int) else chat
            msg = _json.message(message_id=self._new_message_id(chat_json["id"]), chat=chat_json,
                                from_user=sender, **fields)
            self.push({kind: msg})
            return _message(msg)

    def reply_keyboard(self, chat_id: int, message_id: int | None = None) -> JSON | None:
        """The reply keyboard (ReplyKeyboardMarkup JSON) the chat shows now, or the one a bot message brought.

        With ``message_id``: the keyboard the bot sent along with that message, shown or not
        any more. Without: the chat's keyboard now, the latest one sent, until a
        ``ReplyKeyboardRemove``. None when there is none. One keyboard per chat: ``selective``
        is not taken into account.
        """
        with self._cond:
            if message_id is None:
                found = self._state.keyboard_shown.get(chat_id)
            else:
                found = self._state.keyboards_sent.get((chat_id, message_id))
            return copy.deepcopy(found)

    def _new_message_id(self, chat_id: int) -> int:
        n = self._state.last_message_id.get(chat_id, 0) + 1
        self._state.last_message_id[chat_id] = n
        return n

    def _keep(self, message: JSON) -> None:
        self._state.messages[(message["chat"]["id"], message["message_id"])] = message

    def _chat(self, chat_id: Any) -> JSON:
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            for data in self._state.chats.values():
                if data.get("username") == chat_id[1:]:
                    return data
            raise _ApiError(400, "Bad Request: chat not found")
        if not isinstance(chat_id, int):
            raise _ApiError(400, "Bad Request: chat_id is empty" if chat_id in (None, "") else "Bad Request: chat not found")
        # Be lenient with chats nobody declared: unit tests send anywhere.
        return self._state.chats.setdefault(chat_id, _json.chat(chat_id))

    # -- the Bot API methods ------------------------------------------------------------------

    def _dispatch(self, token: str, method: str, params: dict[str, Any]) -> tuple[int, JSON]:
        key = method.lower()
        with self._cond:
            self._state.token = token
            call_index = len(self._state.calls)
            self._state.calls.append(Call(method, params, token, time.monotonic()))
            try:
                self._inject_failure(key)
            except _ApiError as e:
                return self._answer(call_index, e)
            self._cond.notify_all()
        handler = self._handlers.get(key)
        try:
            if handler is not None:
                result = handler(token, params)
            else:
                result = self._fallback(token, method, params)
        except _ApiError as e:
            with self._cond:
                return self._answer(call_index, e)
        except Exception as e:  # a bug here, or parameters we can't make sense of: say which
            with self._cond:
                return self._answer(call_index, _ApiError(500, f"Internal Server Error: the fake Bot API failed on {method}: {e!r}"))
        return 200, {"ok": True, "result": result}

    def _answer(self, call_index: int, error: _ApiError) -> tuple[int, JSON]:
        # Caller holds the lock: rewrite the recorded call with the status it got.
        old = self._state.calls[call_index]
        self._state.calls[call_index] = Call(old.method, old.params, old.token, old.time, error.status)
        self._cond.notify_all()
        return error.status, error.payload()

    def _inject_failure(self, key: str) -> None:
        until = self._state.flood_until.get(key)
        if until is not None:
            left = until - time.monotonic()
            if left > 0:
                raise _ApiError(429, f"Too Many Requests: retry after {_seconds(left)}", _seconds(left))
            del self._state.flood_until[key]
        queue = self._state.failures.get(key)
        if not queue:
            return
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        if failure.retry_after is not None:
            self._state.flood_until[key] = time.monotonic() + failure.retry_after
        raise _ApiError(failure.status, failure.description, failure.retry_after)

    def _get_me(self, token: str, params: dict[str, Any]) -> JSON:
        return self._bot_user(token)

    def _get_updates(self, token: str, params: dict[str, Any]) -> list[JSON]:
        offset = params.get("offset")
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        with self._cond:
            if "allowed_updates" in params:
                allowed = params["allowed_updates"]
                self._state.allowed = list(allowed) if allowed else None
            self._confirm(offset)
            while True:
                batch = self._deliverable(limit)
                if batch or self._stopping or token in self._state.released:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._cond.notify_all()
            return copy.deepcopy(batch)

    def _confirm(self, offset: Any) -> None:
        # Caller holds the lock. Telegram: a positive offset confirms every update below it; a
        # negative one keeps only the last -offset updates and forgets the rest.
        if not isinstance(offset, int) or offset == 0:
            return
        queue = self._state.updates
        if offset > 0:
            self._state.updates = [u for u in queue if u["update_id"] >= offset]
        else:
            self._state.updates = queue[offset:]
        if len(self._state.updates) != len(queue):
            self._cond.notify_all()

    def _deliverable(self, limit: int) -> list[JSON]:
        allowed = self._state.allowed
        if allowed is None:
            wanted = [u for u in self._state.updates if _json.update_type(u) not in _OPT_IN_UPDATES]
        else:
            wanted = [u for u in self._state.updates if _json.update_type(u) in allowed]
        if len(wanted) != len(self._state.updates):
            # Updates the bot did not ask for are dropped, as Telegram never queues them.
            self._state.updates = wanted
        return wanted[:limit]

    def _new_bot_message(self, token: str, params: dict[str, Any], **content: Any) -> JSON:
        chat = self._chat(params.get("chat_id"))
        msg = _json.message(
            message_id=self._new_message_id(chat["id"]), chat=chat, from_user=self._bot_user(token),
            thread_id=params.get("message_thread_id"), **content,
        )
        if "text" in content:
            msg.pop("entities", None)  # the bot's own commands get no entities from us
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            msg["reply_markup"] = markup  # only inline keyboards belong to the message
        elif isinstance(markup, dict) and "keyboard" in markup:
            self._state.keyboards_sent[(chat["id"], msg["message_id"])] = markup
            self._state.keyboard_shown[chat["id"]] = markup
        elif isinstance(markup, dict) and markup.get("remove_keyboard"):
            self._state.keyboard_shown.pop(chat["id"], None)
        reply_to = params.get("reply_to_message_id")
        if reply_to is None and isinstance(params.get("reply_parameters"), dict):
            reply_to = params["reply_parameters"].get("message_id")
        original = self._state.messages.get((chat["id"], reply_to)) if reply_to is not None else None
        if original is not None:
            msg["reply_to_message"] = {k: v for k, v in original.items() if k != "reply_to_message"}
        self._keep(msg)
        self._state.outbox.setdefault(chat["id"], []).append(_Out("sent", copy.deepcopy(msg)))
        self._cond.notify_all()
        return copy.deepcopy(msg)

    def _send_message(self, token: str, params: dict[str, Any]) -> JSON:
        text = params.get("text")
        with self._cond:
            if not text:
                raise _ApiError(400, "Bad Request: message text is empty")
            return self._new_bot_message(token, params, text=str(text))

    def _send_media(self, token: str, method: str, params: dict[str, Any]) -> JSON:
        kind = _MEDIA[method]
        unique = f"f{_json.next_id()}"
        media: Any = {"file_id": unique, "file_unique_id": unique}
        if kind == "photo":
            media = [dict(media, width=1, height=1)]
        elif kind == "sticker":
            media.update(type="regular", width=1, height=1, is_animated=False, is_video=False)
        elif kind in ("video", "animation"):
            media.update(width=1, height=1, duration=1)
        elif kind in ("audio", "voice"):
            media.update(duration=1)
        elif kind == "video_note":
            media.update(length=1, duration=1)
        content: dict[str, Any] = {kind: media}
        if params.get("caption"):
            content["caption"] = params["caption"]
        with self._cond:
            return self._new_bot_message(token, params, **content)

    def _find(self, params: dict[str, Any], verb: str) -> JSON | None:
        # Caller holds the lock. None means an inline message: nothing stored to change.
        if params.get("inline_message_id"):
            return None
        key = (self._chat(params.get("chat_id"))["id"], params.get("message_id"))
        found = self._state.messages.get(key)  # type: ignore[arg-type]
        if found is None:
            raise _ApiError(400, f"Bad Request: message to {verb} not found")
        return found

    def _edit(self, token: str, params: dict[str, Any], text: str | None) -> JSON | bool:
        with self._cond:
            msg = self._find(params, "edit")
            if msg is None:
                return True
            new = copy.deepcopy(msg)
            if text is not None:
                new["text"] = text
            markup = params.get("reply_markup")
            # Like Telegram: an edit without reply_markup removes the inline keyboard.
            if isinstance(markup, dict) and markup.get("inline_keyboard"):
                new["reply_markup"] = markup
            else:
                new.pop("reply_markup", None)
            if new.get("text") == msg.get("text") and new.get("reply_markup") == msg.get("reply_markup"):
                raise _ApiError(400, "Bad Request: message is not modified: specified new message content "
                                     "and reply markup are exactly the same as a current content and reply "
                                     "markup of the message")
            new["edit_date"] = _json.now()
            self._keep(new)
            self._state.outbox.setdefault(new["chat"]["id"], []).append(_Out("edited", copy.deepcopy(new)))
            self._cond.notify_all()
            return copy.deepcopy(new)

    def _edit_message_text(self, token: str, params: dict[str, Any]) -> JSON | bool:
        if not params.get("text"):
            raise _ApiError(400, "Bad Request: message text is empty")
        return self._edit(token, params, str(params["text"]))

    def _edit_message_reply_markup(self, token: str, params: dict[str, Any]) -> JSON | bool:
        return self._edit(token, params, None)

    def _answer_callback_query(self, token: str, params: dict[str, Any]) -> bool:
        with self._cond:
            query_id = params.get("callback_query_id")
            if query_id not in self._state.open_queries:
                raise _ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
            self._state.open_queries.discard(query_id)
            return True

    def _delete_message(self, token: str, params: dict[str, Any]) -> bool:
        with self._cond:
            msg = self._find(params, "delete")
            if msg is not None:
                del self._state.messages[(msg["chat"]["id"], msg["message_id"])]
                self._cond.notify_all()
            return True

    def _get_file(self, token: str, params: dict[str, Any]) -> JSON:
        file_id = str(params.get("file_id"))
        with self._cond:
            if file_id not in self._state.files:
                raise _ApiError(400, "Bad Request: invalid file_id")
            size = len(self._state.files[file_id])
        return {"file_id": file_id, "file_unique_id": file_id, "file_size": size, "file_path": f"files/{file_id}"}

    def _fallback(self, token: str, method: str, params: dict[str, Any]) -> Any:
        if method in _MEDIA:
            return self._send_media(token, method, params)
        return True

    def _download(self, token: str, path: str) -> bytes | None:
        with self._cond:
            return self._state.files.get(path.rsplit("/", 1)[-1])

    def add_file(self, content: bytes, file_id: str | None = None) -> str:
        """Make ``content`` downloadable with ``bot.get_file``/``download_file``; returns its file_id."""
        file_id = file_id or f"file{_json.next_id()}"
        with self._cond:
            self._state.files[file_id] = bytes(content)
        return file_id

    # -- failure injection --------------------------------------------------------------------

    def fail_next(self, method: str, status: int = 502, *, times: int = 1, description: str | None = None) -> None:
        """Answer the next ``times`` calls of ``method`` with an HTTP error and ``ok: false``.

        Failures queue up: ``fail_next("getUpdates"); fail_next("getUpdates", 500)`` fails the
        next call with 502 and the one after with 500.
        """
        text = description or {502: "Bad Gateway", 500: "Internal Server Error", 400: "Bad Request"}.get(status, "Error")
        with self._cond:
            self._state.failures.setdefault(method.lower(), []).append(_Failure(status, text, times))

    def flood_wait(self, method: str, retry_after: float = 1) -> None:
        """Answer the next call of ``method`` with 429 ``retry_after`` and keep refusing it until then.

        Calls that come back too early get 429 again with the seconds left, as Telegram does.
        ``retry_after`` may be a fraction for quick tests (Telegram sends whole seconds).
        """
        with self._cond:
            self._state.failures.setdefault(method.lower(), []).append(
                _Failure(429, f"Too Many Requests: retry after {_seconds(retry_after)}", 1, retry_after))

    # -- polling control ----------------------------------------------------------------------

    def release_polls(self, token: str) -> None:
        """Make ``getUpdates`` for ``token`` answer ``[]`` at once, now and until :meth:`hold_polls`.

        Lets a stopping bot leave its long poll without waiting out the timeout.
        """
        with self._cond:
            self._state.released.add(token)
            self._cond.notify_all()

    def hold_polls(self, token: str) -> None:
        """Undo :meth:`release_polls`: long polls of ``token`` wait for updates again."""
        with self._cond:
            self._state.released.discard(token)

    def confirm(self, offset: int) -> None:
        """Confirm (drop) every queued update whose id is below ``offset``, as getUpdates would."""
        with self._cond:
            self._confirm(offset)

    # -- inspection -----------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        """Every call so far (of ``method`` only, case-insensitive, when given), oldest first."""
        with self._cond:
            return [c for c in self._state.calls if method is None or c.method.lower() == method.lower()]

    def pending_updates(self) -> int:
        """How many updates are queued and not yet confirmed by the bot."""
        with self._cond:
            return len(self._state.updates)

    def messages(self, chat_id: int) -> list[types.Message]:
        """The bot's live messages in a chat, current versions, oldest first (deleted ones left out)."""
        with self._cond:
            bot_sent = {o.message["message_id"] for o in self._state.outbox.get(chat_id, ())}
            found = [m for (c, mid), m in sorted(self._state.messages.items()) if c == chat_id and mid in bot_sent]
            return [_message(m) for m in found]

    def message(self, chat_id: int, message_id: int) -> types.Message:
        """The current version of a message; AssertionError if it does not exist (or was deleted)."""
        with self._cond:
            found = self._state.messages.get((chat_id, message_id))
            if found is None:
                raise AssertionError(f"no message {message_id} in chat {chat_id} (never sent, or deleted)")
            return _message(found)

    # -- waiting --------------------------------------------------------------------------------

    def wait_for_calls(
        self, method: str, count: int = 1, *, timeout: float = 5.0,
        where: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        """Wait until ``count`` calls of ``method`` (matching ``where``) were made; returns them all.

        Counts calls since the server started, failed ones included (check ``Call.status``).
        Raises AssertionError after ``timeout`` seconds, listing the calls that did arrive.
        """
        def found() -> list[Call]:
            return [c for c in self._state.calls
                    if c.method.lower() == method.lower() and (where is None or where(c))]

        with self._cond:
            if self._cond.wait_for(lambda: len(found()) >= count, timeout):
                return found()
            got = found()
            recent = [c for c in self._state.calls if c.method.lower() != "getupdates"][-10:]
            raise AssertionError(
                f"expected {count} {method} call(s) within {timeout}s, got {len(got)}: {got[-5:]!r}; "
                f"latest other calls: {recent!r}")

    def wait_for_reply(
        self, chat_id: int, matching: Matching = None, *, timeout: float = 5.0, topic: int | None = None,
    ) -> types.Message:
        """The oldest message the bot sent to ``chat_id`` that no earlier wait returned and that matches.

        ``matching``: None (any), a regex searched in the text or caption, or a predicate on the
        Message. ``topic`` keeps to one forum topic. Each message is returned once, so a
        conversation reads in order: ``send; wait; send; wait``. Raises AssertionError after
        ``timeout`` seconds, listing what the bot did send there.
        """
        return self._claim("sent", chat_id, None, matching, timeout, topic)

    def wait_for_edit(self, message: types.Message, matching: Matching = None, *, timeout: float = 5.0) -> types.Message:
        """The next edit of ``message`` (text or keyboard) that matches; returns the edited version.

        Like :meth:`wait_for_reply`, each edit is returned once, oldest first.
        """
        return self._claim("edited", message.chat.id, message.message_id, matching, timeout, None)

    def _claim(
        self, kind: str, chat_id: int, message_id: int | None, matching: Matching, timeout: float, topic: int | None,
    ) -> types.Message:
        test = _match.matcher(matching)

        def pick() -> _Out | None:
            for out in self._state.outbox.get(chat_id, ()):
                m = out.message
                if (out.kind == kind and not out.claimed
                        and (message_id is None or m["message_id"] == message_id)
                        and (topic is None or m.get("message_thread_id") == topic)
                        and test(_message(m))):
                    return out
            return None

        with self._cond:
            got = self._cond.wait_for(pick, timeout)
            if got is not None:
                got.claimed = True
                return _message(got.message)
            what = "reply" if kind == "sent" else f"edit of message {message_id}"
            seen = [
                f"{'' if o.claimed else '*'}#{o.message['message_id']} {o.kind} "
                f"{_describe(o.message, self._state.keyboards_sent.get((chat_id, o.message['message_id'])))}"
                for o in self._state.outbox.get(chat_id, ())
            ][-12:]
            raise AssertionError(
                f"no {what} in chat {chat_id}{'' if topic is None else f' topic {topic}'} matching "
                f"{_match.describe(matching)} within {timeout}s; the bot's messages there "
                f"(* = not yet returned by a wait): {seen or 'none'}")


def _seconds(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 3)


def _message(data: JSON) -> types.Message:
    return _json.parse(types.Message, data)


def _describe(message: JSON, reply_keyboard: JSON | None = None) -> str:
    text = message.get("text") or message.get("caption") or "<no text>"
    text = text if len(text) <= 60 else text[:57] + "..."
    buttons = [b.get("text") for row in message.get("reply_markup", {}).get("inline_keyboard", []) for b in row]
    keys = [b if isinstance(b, str) else b.get("text") for row in (reply_keyboard or {}).get("keyboard", []) for b in row]
    return repr(text) + (f" {buttons}" if buttons else "") + (f" keyboard {keys}" if keys else "")
