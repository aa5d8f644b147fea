"""Lazy sessions: nothing read or locked until a handler asks; once asked, the guarantees of eager ones."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from telebot.handler_backends import BaseMiddleware, CancelUpdate

from telesession import SessionError, SessionMiddleware, SessionStorage
from telesession._locks import table_for
from telesession.storage.base import JSONValue, Lease

from .conftest import STORAGE_KINDS, Counter, make_bot, stored, text_update
from .test_concurrency import Done


class Counted:
    """Wraps a storage and counts every call the engine makes to it."""

    def __init__(self, storage: SessionStorage) -> None:
        self.inner = storage
        self.calls: list[str] = []

    def wrap(self) -> SessionStorage:
        inner, calls = self.inner, self.calls

        class Counting(type(inner)):  # type: ignore[misc]
            def get(self, key: str) -> JSONValue | None:
                calls.append("get")
                return inner.get(key)

            def set(self, key: str, value: JSONValue) -> None:
                calls.append("set")
                inner.set(key, value)

            def delete(self, key: str) -> None:
                calls.append("delete")
                inner.delete(key)

            def acquire(self, key: str, *, blocking: bool = True) -> Lease | None:
                calls.append("acquire")
                return inner.acquire(key, blocking=blocking)

            def identity(self) -> Any:
                return inner.identity()

        counting = Counting.__new__(Counting)
        counting.__dict__.update(inner.__dict__)
        return counting


@pytest.mark.parametrize("kind", list(STORAGE_KINDS))
def test_untouched_updates_cost_no_storage_call_and_no_lock(kind: str, tmp_path: Path) -> None:
    """500 updates whose handlers never ask for the session: zero storage calls, no lock ever taken."""
    counted = Counted(STORAGE_KINDS[kind](tmp_path))
    storage = counted.wrap()
    sessions = SessionMiddleware(initial=lambda: {"n": 0}, storage=storage, lazy=True)
    bot = make_bot()
    bot.setup_middleware(sessions)
    table = table_for(storage.identity())
    most_held = []
    bot.message_handler(func=lambda m: True)(lambda m: most_held.append(len(table)))
    bot.process_new_updates([text_update("hi", chat_id=c % 7) for c in range(500)])
    assert counted.calls == [] and set(most_held) == {0}
    counted.inner.close()


def test_once_asked_a_lazy_session_is_held_until_the_update_ends_and_saved_if_changed() -> None:
    """of() loads on first use, keeps the key until post_process, saves a change, writes nothing for a read."""
    counted = Counted(STORAGE_KINDS["memory"](Path(".")))
    storage = counted.wrap()
    sessions = SessionMiddleware(initial=lambda: {"n": 0}, storage=storage, lazy=True)
    done = Counter()
    bot = make_bot(threaded=True, num_threads=4)
    bot.setup_middleware(sessions)
    bot.setup_middleware(Done(done))
    table = table_for(storage.identity())
    held_during: list[int] = []

    @bot.message_handler(commands=["count"])
    def count(message: Any) -> None:
        session = sessions.of(message)
        assert sessions.of(message) is session  # loaded once per update
        value = session["n"]
        time.sleep(0.0005)
        session["n"] = value + 1
        held_during.append(len(table))

    @bot.message_handler(commands=["look"])
    def look(message: Any) -> None:
        assert sessions.of(message)["n"] >= 0

    batch = [text_update("/count", chat_id=c) for _ in range(50) for c in (1, 2)]
    for i in range(0, 100, 20):
        bot.process_new_updates(batch[i : i + 20])
    done.wait(100)
    saved_at = storage.get("1")["saved_at"]
    bot.process_new_updates([text_update("/look", chat_id=1) for _ in range(10)])
    done.wait(110)
    bot.stop_bot()
    assert stored(storage, 1) == {"n": 50} and stored(storage, 2) == {"n": 50}
    assert storage.get("1")["saved_at"] == saved_at  # reading wrote nothing
    assert counted.calls.count("acquire") == 110  # one hold per update that asked
    assert min(held_during) >= 1 and len(table) == 0


def test_a_filter_may_ask_for_a_lazy_session() -> None:
    """A handler's filter calling of() loads the session for the filter and the handler alike."""
    storage = STORAGE_KINDS["memory"](Path("."))
    sessions = SessionMiddleware(initial=lambda: {"step": "name"}, storage=storage, lazy=True)
    bot = make_bot()
    bot.setup_middleware(sessions)
    got: list[str] = []

    @bot.message_handler(func=lambda m: sessions.of(m)["step"] == "name")
    def name(message: Any) -> None:
        got.append(message.text)
        sessions.of(message)["step"] = "done"

    bot.process_new_updates([text_update("Ann"), text_update("again")])
    assert got == ["Ann"] and stored(storage, 42) == {"step": "done"}


def test_a_lazy_session_is_released_when_a_later_middleware_cancels(tmp_path: Path) -> None:
    """A lazy session loaded in a filter, then the update cancelled by a later middleware: the lock goes at once."""

    storage = STORAGE_KINDS["file"](tmp_path)
    sessions = SessionMiddleware(initial=lambda: {"n": 0}, storage=storage, lazy=True)

    class LoadThenCancel(BaseMiddleware):  # type: ignore[misc]
        update_types = ["message"]

        def pre_process(self, message: Any, data: dict[str, Any]) -> CancelUpdate | None:
            sessions.of(message)["n"] += 1  # loads (and locks) it ...
            return CancelUpdate() if message.text == "cancel" else None  # ... and telebot skips post_process

        def post_process(self, message: Any, data: dict[str, Any], exception: Any) -> None:
            pass

    bot = make_bot()
    bot.setup_middleware(sessions)
    bot.setup_middleware(LoadThenCancel())
    handled = threading.Event()
    bot.message_handler(func=lambda m: True)(lambda m: handled.set())
    bot.process_new_updates([text_update("cancel", chat_id=5)])
    started = time.monotonic()
    bot.process_new_updates([text_update("next", chat_id=5)])
    assert handled.is_set() and time.monotonic() - started < 1.0
    assert stored(storage, 5) == {"n": 1}  # the cancelled update's change was dropped
    storage.close()


def test_reading_message_session_before_asking_says_what_to_do() -> None:
    """With lazy=True, message.session before sessions.of(message) explains itself instead of a bare AttributeError."""
    storage = STORAGE_KINDS["memory"](Path("."))
    sessions = SessionMiddleware(initial=lambda: {"n": 0}, storage=storage, lazy=True)
    bot = make_bot()
    bot.setup_middleware(sessions)
    errors: list[str] = []

    @bot.message_handler(func=lambda m: True)
    def handle(message: Any) -> None:
        try:
            message.session["n"]
        except TypeError as e:
            errors.append(str(e))
        try:
            message.session.n
        except AttributeError as e:
            errors.append(str(e))
        sessions.of(message)["n"] = 1

    bot.process_new_updates([text_update("x")])
    assert len(errors) == 2 and all("sessions.of(message) first" in e for e in errors), errors
    assert stored(storage, 42) == {"n": 1}


def test_of_after_the_update_is_refused() -> None:
    """A lazy session is loaded inside its update only; afterwards of() refuses (use edit)."""
    storage = STORAGE_KINDS["memory"](Path("."))
    sessions = SessionMiddleware(initial=lambda: {"n": 0}, storage=storage, lazy=True)
    bot = make_bot()
    bot.setup_middleware(sessions)
    kept: list[Any] = []
    bot.message_handler(func=lambda m: True)(kept.append)
    bot.process_new_updates([text_update("x")])
    with pytest.raises(SessionError, match="inside a handler"):
        sessions.of(kept[0])


def test_an_update_without_a_key_has_no_session_as_with_eager_ones() -> None:
    """A lazy middleware still says "no session here" with None (an inline query has no chat), as eager ones do."""
    from telesession.testing import updates

    sessions = SessionMiddleware(initial=lambda: {"n": 0}, storage=STORAGE_KINDS["memory"](Path(".")), lazy=True)
    bot = make_bot()
    bot.setup_middleware(sessions)
    seen: list[Any] = []

    @bot.inline_handler(func=lambda q: True)
    def inline(query: Any) -> None:
        seen.append(query.session)
        try:
            sessions.of(query)
        except SessionError as e:
            seen.append(type(e).__name__)

    bot.process_new_updates([updates.inline_query("x")])
    assert seen == [None, "SessionKeyError"]
