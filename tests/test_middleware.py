"""SessionMiddleware through a real TeleBot: loading, saving, attaching, keys and failures."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pytest
import telebot
from telebot.types import Update

from telesession import (
    FileStorage,
    MemoryStorage,
    SessionMiddleware,
    SessionStorage,
    per_chat_user,
    per_user,
)
from telesession.storage.base import JSONValue

from .conftest import make_bot, message, stored, text_update, update, user


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Item:
    sku: str
    qty: int = 1


@dataclass
class MySession:
    count: int = 0
    username: Optional[str] = None
    items: list[Item] = field(default_factory=list)
    prefs: dict[str, str] = field(default_factory=dict)
    color: Color = Color.RED
    seen: Optional[datetime] = None

    def increment(self) -> None:
        self.count += 1


class CountingStorage(MemoryStorage):
    """A MemoryStorage that counts writes and deletes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.deletes = 0

    def set(self, key: str, value: JSONValue) -> None:
        self.writes += 1
        super().set(key, value)

    def delete(self, key: str) -> None:
        self.deletes += 1
        super().delete(key)


def counter_bot(storage: SessionStorage, **options: Any) -> telebot.TeleBot:
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=MySession, storage=storage, **options))

    @bot.message_handler(commands=["count"])
    def count(msg: Any) -> None:
        msg.session.increment()

    return bot


def test_the_readme_example_counts_per_chat(storage: SessionStorage) -> None:
    """The five-line setup counts per chat and persists a typed session."""
    bot = counter_bot(storage)
    bot.process_new_updates([text_update("/count", chat_id=1), text_update("/count", chat_id=1), text_update("/count", chat_id=2)])
    assert stored(storage, "1")["count"] == 2
    assert stored(storage, "2")["count"] == 1


def test_typed_session_round_trips_every_field_kind(tmp_path: Path) -> None:
    """Nested dataclasses, lists, dicts, Optional, Enum and datetime survive a new process's load."""
    storage = FileStorage(tmp_path)
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=MySession, storage=storage))
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    @bot.message_handler(commands=["fill"])
    def fill(msg: Any) -> None:
        s: MySession = msg.session
        s.username, s.color, s.seen = "ann", Color.BLUE, when
        s.items.append(Item("apple", 3))
        s.prefs["lang"] = "en"

    seen: list[MySession] = []

    @bot.message_handler(commands=["look"])
    def look(msg: Any) -> None:
        seen.append(msg.session)

    bot.process_new_updates([text_update("/fill")])
    bot2 = make_bot()
    bot2.setup_middleware(SessionMiddleware(initial=MySession, storage=FileStorage(tmp_path)))
    bot2.message_handler(commands=["look"])(look)
    bot2.process_new_updates([text_update("/look")])
    assert seen == [MySession(0, "ann", [Item("apple", 3)], {"lang": "en"}, Color.BLUE, when)]


def test_dict_session_and_initial_called_anew() -> None:
    """A plain dict session works, and every new session gets a fresh initial value."""
    storage = MemoryStorage()
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=lambda: {"count": 0, "tags": []}, storage=storage))

    @bot.message_handler(func=lambda m: True)
    def h(msg: Any) -> None:
        msg.session["count"] += 1
        msg.session["tags"].append(msg.text)

    bot.process_new_updates([text_update("a", chat_id=1), text_update("b", chat_id=2), text_update("c", chat_id=1)])
    assert stored(storage, "1") == {"count": 2, "tags": ["a", "c"]}
    assert stored(storage, "2") == {"count": 1, "tags": ["b"]}


def test_session_is_passed_as_handler_parameter() -> None:
    """A handler declaring a parameter named like attr receives the session."""
    storage = MemoryStorage()
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=MySession, storage=storage, attr="prefs"))

    @bot.message_handler(func=lambda m: True)
    def h(msg: Any, prefs: MySession) -> None:
        assert msg.prefs is prefs
        prefs.count += 5

    bot.process_new_updates([text_update("x")])
    assert stored(storage, "42")["count"] == 5


def test_only_changed_sessions_are_written() -> None:
    """Reading a session costs no write; a new session nobody touched is never written."""
    storage = CountingStorage()
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=MySession, storage=storage))

    @bot.message_handler(commands=["count"])
    def count(msg: Any) -> None:
        msg.session.increment()

    @bot.message_handler(func=lambda m: True)
    def read(msg: Any) -> None:
        assert msg.session.count >= 0

    bot.process_new_updates([text_update("hello", chat_id=7)])
    assert storage.writes == 0 and not storage.has("7")
    bot.process_new_updates([text_update("/count", chat_id=7)])
    assert storage.writes == 1
    bot.process_new_updates([text_update("hello", chat_id=7)] * 3)
    assert storage.writes == 1


@dataclass
class Loose:
    flag: Any = 1
    ratio: float = 1


@pytest.mark.parametrize("initial", [lambda: {"flag": 1, "ratio": 1}, Loose], ids=["dict", "dataclass"])
def test_a_type_only_change_is_saved(initial: Any) -> None:
    """1 -> True and 1 -> 1.0 are changes even though they are == in Python: forms are compared as JSON."""
    storage = MemoryStorage()
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=initial, storage=storage))

    @bot.message_handler(commands=["set"])
    def h(msg: Any, session: Any) -> None:
        if isinstance(session, dict):
            session["touched"] = 1
        else:
            msg.session = Loose(flag=1, ratio=2)  # stored: {"flag": 1, "ratio": 2}

    @bot.message_handler(commands=["flip"])
    def flip(msg: Any, session: Any) -> None:
        if isinstance(session, dict):
            session["flag"], session["ratio"] = True, 1.0
        else:
            session.flag, session.ratio = True, 2.0

    bot.process_new_updates([text_update("/set")])
    before = stored(storage, "42")
    bot.process_new_updates([text_update("/flip")])
    after = stored(storage, "42")
    assert after == before  # equal in Python ...
    assert after["flag"] is True and type(after["ratio"]) is float  # ... but not the same JSON


def test_raising_handler_discards_changes(log_errors: pytest.LogCaptureFixture) -> None:
    """A handler that raises leaves the stored session as it was."""
    storage = MemoryStorage()
    bot = counter_bot(storage)

    @bot.message_handler(commands=["boom"])
    def boom(msg: Any) -> None:
        msg.session.count = 999
        raise RuntimeError("boom")

    logging.getLogger("TeleBot").setLevel(logging.CRITICAL)
    bot.process_new_updates([text_update("/count"), text_update("/boom")])
    assert stored(storage, "42")["count"] == 1


def test_assigning_a_new_object_saves_it_and_none_deletes() -> None:
    """obj.session = X saves X; obj.session = None deletes the record."""
    storage = CountingStorage()
    bot = counter_bot(storage)

    @bot.message_handler(commands=["reset"])
    def reset(msg: Any) -> None:
        msg.session = MySession(count=100)

    @bot.message_handler(commands=["forget"])
    def forget(msg: Any) -> None:
        msg.session = None

    bot.process_new_updates([text_update("/count"), text_update("/reset")])
    assert stored(storage, "42")["count"] == 100
    bot.process_new_updates([text_update("/forget")])
    assert not storage.has("42") and storage.deletes == 1
    bot.process_new_updates([text_update("/forget")])  # nothing stored: nothing to delete
    assert storage.deletes == 1


def test_assigning_the_wrong_type_is_reported(log_errors: pytest.LogCaptureFixture) -> None:
    """A handler that puts a dict where the session class belongs gets a clear error, nothing stored."""
    storage = MemoryStorage()
    bot = counter_bot(storage)

    @bot.message_handler(commands=["bad"])
    def bad(msg: Any) -> None:
        msg.session = {"count": 1}

    bot.process_new_updates([text_update("/count"), text_update("/bad")])
    assert stored(storage, "42")["count"] == 1
    assert "must be a MySession" in log_errors.text and "'42'" in log_errors.text


def test_unserializable_data_names_the_field_and_keeps_the_record(log_errors: pytest.LogCaptureFixture) -> None:
    """A value JSON cannot hold is reported with its path and the stored record stays."""
    storage = MemoryStorage()
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=lambda: {"count": 0, "cart": {"items": []}}, storage=storage))

    @bot.message_handler(commands=["count"])
    def count(msg: Any) -> None:
        msg.session["count"] += 1

    @bot.message_handler(commands=["bad"])
    def bad(msg: Any) -> None:
        msg.session["count"] += 1
        msg.session["cart"]["items"].append(datetime.now())

    bot.process_new_updates([text_update("/count"), text_update("/bad")])
    assert stored(storage, "42") == {"count": 1, "cart": {"items": []}}
    assert "cart.items[0]" in log_errors.text and "datetime" in log_errors.text


def test_an_integer_too_large_for_json_names_the_field(log_errors: pytest.LogCaptureFixture) -> None:
    """A dataclass field the codec passes but JSON can't hold (over 64 bits) is reported by its path."""
    storage = MemoryStorage()
    bot = counter_bot(storage)

    @bot.message_handler(commands=["huge"])
    def huge(msg: Any) -> None:
        msg.session.count = 2**70

    bot.process_new_updates([text_update("/count"), text_update("/huge")])
    assert stored(storage, "42")["count"] == 1
    assert "count holds an integer outside JSON's 64-bit range" in log_errors.text and "'42'" in log_errors.text


def test_added_field_gets_default_and_unknown_fields_survive() -> None:
    """An old record loads into a newer class, and fields a newer deploy wrote are kept on save."""
    storage = MemoryStorage()
    storage.set("42", {"data": {"count": 3, "from_the_future": {"x": 1}}, "schema": 0, "saved_at": 0})
    bot = counter_bot(storage)
    bot.process_new_updates([text_update("/count")])
    data = stored(storage, "42")
    assert data["count"] == 4 and data["items"] == [] and data["from_the_future"] == {"x": 1}


def test_record_carries_schema_and_write_time() -> None:
    """Each stored record leaves room for migrations and TTL: a schema number and the write time."""
    storage = MemoryStorage()
    counter_bot(storage).process_new_updates([text_update("/count")])
    record = storage.get("42")
    assert record["schema"] == 0 and isinstance(record["saved_at"], float) and record["data"]["count"] == 1


def test_key_none_gives_no_session_and_the_handler_runs() -> None:
    """An update without a chat gets session None and still reaches its handler."""
    storage = CountingStorage()
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=MySession, storage=storage))
    got: list[Any] = []

    @bot.inline_handler(func=lambda q: True)
    def inline(query: Any, session: Any) -> None:
        got.append((query.session, session))

    bot.process_new_updates([update(inline_query={"id": "1", "from": user(5), "query": "q", "offset": ""})])
    assert got == [(None, None)] and storage.writes == 0


EVERY_KIND = {
    "message": (lambda: {"message": message()}, "42"),
    "edited_message": (lambda: {"edited_message": {**message(), "edit_date": 1}}, "42"),
    "channel_post": (lambda: {"channel_post": message(chat_id=-1001, user_id=None, kind="channel")}, "-1001"),
    "edited_channel_post": (lambda: {"edited_channel_post": message(chat_id=-1001, user_id=None, kind="channel")}, "-1001"),
    "business_message": (lambda: {"business_message": message(business_connection_id="b")}, "business:b:42"),
    "callback_query": (lambda: {"callback_query": {"id": "c", "from": user(), "chat_instance": "i", "data": "d", "message": message(chat_id=-5, kind="group")}}, "-5"),
    "inline_callback_query": (lambda: {"callback_query": {"id": "c", "from": user(), "chat_instance": "i", "data": "d", "inline_message_id": "im"}}, None),
    "inline_query": (lambda: {"inline_query": {"id": "1", "from": user(), "query": "", "offset": ""}}, None),
    "chosen_inline_result": (lambda: {"chosen_inline_result": {"result_id": "r", "from": user(), "query": "q"}}, None),
    "poll_answer": (lambda: {"poll_answer": {"poll_id": "p", "user": user(), "option_ids": [0], "option_persistent_ids": ["0"]}}, None),
    "my_chat_member": (lambda: {"my_chat_member": member_update(-7)}, "-7"),
    "chat_member": (lambda: {"chat_member": member_update(-8)}, "-8"),
    "chat_join_request": (lambda: {"chat_join_request": {"chat": chat_dict(-9), "from": user(), "user_chat_id": 42, "date": 1}}, "-9"),
    "message_reaction": (lambda: {"message_reaction": {"chat": chat_dict(-10), "message_id": 1, "user": user(), "date": 1, "old_reaction": [], "new_reaction": [{"type": "emoji", "emoji": "👍"}]}}, "-10"),
    "message_reaction_count": (lambda: {"message_reaction_count": {"chat": chat_dict(-11), "message_id": 1, "date": 1, "reactions": []}}, "-11"),
    "chat_boost": (lambda: {"chat_boost": {"chat": chat_dict(-12), "boost": {"boost_id": "b", "add_date": 1, "expiration_date": 2, "source": {"source": "premium", "user": user()}}}}, "-12"),
    "shipping_query": (lambda: {"shipping_query": {"id": "s", "from": user(), "invoice_payload": "p", "shipping_address": {"country_code": "DE", "state": "", "city": "B", "street_line1": "s", "street_line2": "", "post_code": "1"}}}, None),
}


def chat_dict(cid: int) -> dict[str, Any]:
    return {"id": cid, "type": "supergroup", "title": "g"}


def member_update(cid: int) -> dict[str, Any]:
    member = {"status": "member", "user": user()}
    return {"chat": chat_dict(cid), "from": user(), "date": 1, "old_chat_member": {**member, "status": "left"}, "new_chat_member": member}


@pytest.mark.parametrize("kind", list(EVERY_KIND))
def test_session_attached_on_every_update_kind(kind: str) -> None:
    """Every update kind gets obj.session (keyed by its chat), or None where it has no chat."""
    make, key = EVERY_KIND[kind]
    storage = MemoryStorage()
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=MySession, storage=storage))
    seen: list[Any] = []

    class Probe(telebot.handler_backends.BaseMiddleware):
        update_types = SessionMiddleware.update_types

        def pre_process(self, obj: Any, data: dict[str, Any]) -> None:
            seen.append(obj.session)
            if obj.session is not None:
                obj.session.count += 1

        def post_process(self, obj: Any, data: dict[str, Any], exception: Any) -> None:
            pass

    bot.setup_middleware(Probe())
    bot.process_new_updates([Update.de_json({"update_id": 1, **make()})])
    assert len(seen) == 1
    if key is None:
        assert seen == [None] and list(storage.keys()) == []
    else:
        assert isinstance(seen[0], MySession) and stored(storage, key)["count"] == 1


def test_chat_and_user_sessions_side_by_side_in_a_private_chat() -> None:
    """A chat session and a user session on one storage never collide, even where chat id == user id."""
    storage = MemoryStorage()
    bot = make_bot(threaded=False)
    bot.setup_middleware(SessionMiddleware(initial=MySession, storage=storage))
    bot.setup_middleware(SessionMiddleware(initial=lambda: {"visits": 0}, storage=storage, get_session_key=per_user, attr="user_session"))
    bot.setup_middleware(SessionMiddleware(initial=lambda: {"n": 0}, storage=storage, get_session_key=per_chat_user, attr="member"))

    @bot.message_handler(func=lambda m: True)
    def h(msg: Any, session: MySession, user_session: dict[str, int], member: dict[str, int]) -> None:
        session.count += 1
        user_session["visits"] += 10
        member["n"] += 100

    bot.process_new_updates([text_update("x", chat_id=42, user_id=42), text_update("y", chat_id=-3, user_id=42, kind="group")])
    assert stored(storage, "42")["count"] == 1
    assert stored(storage, "-3")["count"] == 1
    assert stored(storage, "user:42") == {"visits": 20}
    assert stored(storage, "42:42") == {"n": 100} and stored(storage, "-3:42") == {"n": 100}


def test_two_middlewares_with_one_key_are_refused_not_deadlocked(log_errors: pytest.LogCaptureFixture) -> None:
    """Two middlewares producing the same key on one storage get a clear error instead of hanging."""
    storage = MemoryStorage()
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=MySession, storage=storage))
    bot.setup_middleware(SessionMiddleware(initial=MySession, storage=storage, attr="again"))
    bot.process_new_updates([text_update("x")])
    assert "already held by this update" in log_errors.text


class BrokenStorage(MemoryStorage):
    """A storage whose reads or writes fail like a lost disk or connection."""

    def __init__(self, fail_get: bool = False, fail_set: bool = False) -> None:
        super().__init__()
        self.fail_get, self.fail_set = fail_get, fail_set

    def get(self, key: str) -> JSONValue | None:
        if self.fail_get:
            raise OSError("disk went away")
        return super().get(key)

    def set(self, key: str, value: JSONValue) -> None:
        if self.fail_set:
            raise OSError("disk is full")
        super().set(key, value)


@pytest.mark.parametrize("threaded", [False, True])
def test_storage_read_failure_is_logged_and_skips_the_handler(threaded: bool, log_errors: pytest.LogCaptureFixture) -> None:
    """A failing read never reaches telebot's loop: logged with key and cause, handler skipped, lock freed."""
    storage = BrokenStorage(fail_get=True)
    bot = make_bot(threaded=threaded)
    bot.setup_middleware(SessionMiddleware(initial=MySession, storage=storage))
    ran = []
    bot.message_handler(func=lambda m: True)(lambda m: ran.append(m))
    bot.process_new_updates([text_update("x")])
    if threaded:
        bot.worker_pool.close()
        bot.worker_pool.raise_exceptions()
    assert ran == []
    assert "'42'" in log_errors.text and "disk went away" in log_errors.text
    storage.fail_get = False
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=MySession, storage=storage))
    bot.message_handler(func=lambda m: True)(lambda m: ran.append(m))
    bot.process_new_updates([text_update("x")])  # would hang if the lock had stayed
    assert len(ran) == 1


def test_storage_write_failure_is_logged(log_errors: pytest.LogCaptureFixture) -> None:
    """A failing write is logged with the key; the next update of the chat proceeds."""
    storage = BrokenStorage(fail_set=True)
    bot = counter_bot(storage)
    bot.process_new_updates([text_update("/count"), text_update("/count")])
    failures = [r.getMessage() for r in log_errors.records if "disk is full" in r.getMessage()]
    assert len(failures) == 2 and all("'42'" in f for f in failures)


def test_corrupt_record_is_reported_and_left_in_place(tmp_path: Path, log_errors: pytest.LogCaptureFixture) -> None:
    """A file that isn't a record stops that chat's updates with a clear error and is never overwritten."""
    storage = FileStorage(tmp_path)
    path = storage.file("42")
    path.write_bytes(b'{"key": "42", "value": {"data": {"count": 1}')  # torn by hand
    bot = counter_bot(storage)
    ran = []
    bot.message_handler(func=lambda m: True)(lambda m: ran.append(1))
    bot.process_new_updates([text_update("/count"), text_update("hello")])
    assert path.read_bytes() == b'{"key": "42", "value": {"data": {"count": 1}'
    assert ran == []
    assert str(path) in log_errors.text and "'42'" in log_errors.text


def test_record_that_does_not_fit_the_class_is_reported(log_errors: pytest.LogCaptureFixture) -> None:
    """Stored data of the wrong shape names the key and the field and is left alone."""
    storage = MemoryStorage()
    bad = {"data": {"count": 1, "items": [{"qty": 2}]}, "schema": 0, "saved_at": 0}
    storage.set("42", bad)
    counter_bot(storage).process_new_updates([text_update("/count")])
    assert storage.get("42") == bad
    assert "'42'" in log_errors.text and "items" in log_errors.text and "sku" in log_errors.text


def test_broken_key_function_is_logged(log_errors: pytest.LogCaptureFixture) -> None:
    """A key function that raises or returns a non-string is reported, not raised into telebot."""
    bot = counter_bot(MemoryStorage(), get_session_key=lambda obj: obj.nonexistent)
    bot.process_new_updates([text_update("/count")])
    bot = counter_bot(MemoryStorage(), get_session_key=lambda obj: 42)
    bot.process_new_updates([text_update("/count")])
    assert "get_session_key failed" in log_errors.text and "returned 42" in log_errors.text


def test_bad_initial_is_refused_at_setup() -> None:
    """initial must make a dataclass instance or a dict; anything else fails at construction."""
    with pytest.raises(TypeError, match="dataclass instance or a dict"):
        SessionMiddleware(initial=lambda: [1, 2])


def test_default_storage_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    """Without a storage the middleware keeps sessions in memory and says so once."""
    caplog.set_level(logging.WARNING, logger="telesession")
    bot = counter_bot(None)  # type: ignore[arg-type]
    bot.process_new_updates([text_update("/count")] * 3)
    assert caplog.text.count("lost when the bot restarts") == 1


# -- hardening: what JSON can't hold, misuse, internals -----------------------------------------


@dataclass
class Priced:
    price: float = 1.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("initial", [lambda: {"cart": {"price": 1.0}}, Priced], ids=["dict", "dataclass"])
def test_nan_and_infinity_are_refused_with_key_and_path(initial: Any, bad: float, log_errors: pytest.LogCaptureFixture) -> None:
    """NaN and infinities are not JSON: the save is refused naming key and field, the stored record stays (never null)."""
    storage = MemoryStorage()
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=initial, storage=storage))

    @bot.message_handler(commands=["set"])
    def set_price(msg: Any) -> None:
        if isinstance(msg.session, dict):
            msg.session["cart"]["price"] = 2.0 if msg.text == "/set ok" else bad
        else:
            msg.session.price = 2.0 if msg.text == "/set ok" else bad

    bot.process_new_updates([text_update("/set ok"), text_update("/set bad")])
    expected = {"cart": {"price": 2.0}} if isinstance(initial(), dict) else {"price": 2.0}
    assert stored(storage, "42") == expected
    path = "cart.price" if isinstance(initial(), dict) else "price"
    assert path in log_errors.text and "which JSON can't hold" in log_errors.text and "'42'" in log_errors.text


def test_a_session_nested_ten_thousand_deep_is_refused_like_any_unstorable_value(log_errors: pytest.LogCaptureFixture) -> None:
    """No RecursionError: the error names the key and (a shortened form of) the path."""
    storage = MemoryStorage()
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=lambda: {"n": 0}, storage=storage))

    @bot.message_handler(func=lambda m: True)
    def nest(msg: Any) -> None:
        deep: dict[str, Any] = {}
        for _ in range(10_000):
            deep = {"a": deep}
        msg.session["tree"] = deep

    bot.process_new_updates([text_update("x")])
    assert storage.get("42") is None
    assert "RecursionError" not in log_errors.text and "'42'" in log_errors.text and "nested too deep" in log_errors.text


@pytest.mark.parametrize("initial", [{"n": 0}, MySession()], ids=["dict instance", "dataclass instance"])
def test_an_instance_for_initial_is_refused_naming_initial(initial: Any) -> None:
    """initial={"n": 0} would share one dict between every chat: a TypeError naming initial, at construction."""
    with pytest.raises(TypeError, match="initial must be a callable"):
        SessionMiddleware(initial=initial, storage=MemoryStorage())


@pytest.mark.parametrize("attr", ["state", "data", "bot", "text", "chat", "from_user", "json", "not an identifier"])
def test_attr_names_telebot_uses_are_refused(attr: str) -> None:
    """An attr telebot puts in data (state, bot, data) or that would overwrite an update field is refused at construction."""
    with pytest.raises(ValueError, match=repr(attr) if attr.isidentifier() else "identifier"):
        SessionMiddleware(initial=MySession, storage=MemoryStorage(), attr=attr)


def test_handlers_taking_data_see_no_internals() -> None:
    """A handler declared as (message, data) finds its session there and nothing of telesession's own."""
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=MySession, storage=MemoryStorage()))
    seen: list[dict[str, Any]] = []
    bot.message_handler(func=lambda m: True)(lambda message, data: seen.append(dict(data)))
    bot.process_new_updates([text_update("x")])
    assert list(seen[0]) == ["session"] and isinstance(seen[0]["session"], MySession)


def test_telebot_says_how_to_switch_class_middlewares_on(caplog: pytest.LogCaptureFixture) -> None:
    """Without use_class_middlewares=True telebot refuses the middleware with a line naming the fix; of() names it too."""
    caplog.set_level(logging.ERROR, logger="TeleBot")
    bot = telebot.TeleBot("123:TEST", threaded=False)
    sessions = SessionMiddleware(initial=MySession, storage=MemoryStorage())
    bot.setup_middleware(sessions)
    assert "use_class_middlewares=True" in caplog.text
    seen: list[str] = []

    @bot.message_handler(func=lambda m: True)
    def handle(message: Any) -> None:
        try:
            sessions.of(message)
        except Exception as e:
            seen.append(str(e))

    bot.process_new_updates([text_update("x")])
    assert "use_class_middlewares=True" in seen[0]
