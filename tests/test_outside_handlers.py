"""Sessions outside handlers: edit/get/delete/keys/of on the middleware, from jobs, admin code and next-step handlers."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import telebot

from telesession import (
    MemoryStorage,
    SessionError,
    SessionKeyError,
    SessionMiddleware,
    SessionStorage,
    per_chat,
    per_chat_user,
    per_topic,
    per_user,
)
from telesession._locks import table_for
from telesession.storage.base import JSONValue
from telesession.testing import updates

from .conftest import STORAGE_KINDS, Counter, make_bot, run_processes, stored, text_update, update, user
from .test_concurrency import Done


@dataclass
class Count:
    n: int = 0


def counting_bot(storage: SessionStorage, done: Counter, num_threads: int = 4) -> tuple[telebot.TeleBot, SessionMiddleware[Count]]:
    bot = make_bot(threaded=True, num_threads=num_threads)
    sessions = SessionMiddleware(initial=Count, storage=storage)
    bot.setup_middleware(sessions)
    bot.setup_middleware(Done(done))

    @bot.message_handler(commands=["count"])
    def count(message: Any) -> None:
        session = sessions.of(message)
        value = session.n
        time.sleep(0.0005)  # a slow read-modify-write: a lost update needs only this window
        session.n = value + 1

    return bot, sessions


def edit_many(sessions: SessionMiddleware[Count], key: str, times: int) -> None:
    for _ in range(times):
        with sessions.edit(key) as session:
            value = session.n
            time.sleep(0.0005)
            session.n = value + 1


def test_edits_from_jobs_racing_handlers_lose_nothing(storage: SessionStorage) -> None:
    """4 workers x 150 /count on 2 chats while 2 job threads edit one of them 100 times each: exact counts."""
    done = Counter()
    bot, sessions = counting_bot(storage, done)
    jobs = [threading.Thread(target=edit_many, args=(sessions, per_chat.key(1), 100)) for _ in range(2)]
    for job in jobs:
        job.start()
    batch = [text_update("/count", chat_id=c) for _ in range(75) for c in (1, 2)]
    for i in range(0, len(batch), 25):
        bot.process_new_updates(batch[i : i + 25])
    for job in jobs:
        job.join(60)
    done.wait(150)
    bot.stop_bot()
    assert stored(storage, 1) == {"n": 75 + 200} and stored(storage, 2) == {"n": 75}
    assert len(table_for(storage.identity())) == 0


def _edit_in_another_process(kind: str, directory: str, times: int) -> None:
    storage = STORAGE_KINDS[kind](Path(directory))
    sessions = SessionMiddleware(initial=Count, storage=storage)
    edit_many(sessions, per_chat.key(1), times)
    storage.close()


def test_edits_from_another_process_racing_handlers_lose_nothing(persistent_kind: str, tmp_path: Path) -> None:
    """A job process edits a chat's session while this process's bot handles its updates: exact counts."""
    storage = STORAGE_KINDS[persistent_kind](tmp_path)
    done = Counter()
    bot, _ = counting_bot(storage, done)
    job = threading.Thread(target=run_processes, args=(_edit_in_another_process, [(persistent_kind, str(tmp_path), 60)] * 2))
    job.start()
    batch = [text_update("/count", chat_id=1) for _ in range(80)]
    for i in range(0, len(batch), 20):
        bot.process_new_updates(batch[i : i + 20])
    done.wait(80, timeout=120)
    job.join(180)
    bot.stop_bot()
    assert stored(storage, 1) == {"n": 80 + 120}
    storage.close()


class Calls(MemoryStorage):
    """A MemoryStorage that records every verb called on it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def get(self, key: str) -> JSONValue | None:
        self.calls.append("get")
        return super().get(key)

    def set(self, key: str, value: JSONValue) -> None:
        self.calls.append("set")
        super().set(key, value)

    def delete(self, key: str) -> None:
        self.calls.append("delete")
        super().delete(key)


def test_edit_starts_fresh_saves_changes_and_drops_them_on_error() -> None:
    """edit gives a fresh initial session for a new key, writes only a change, and writes nothing when its block raises."""
    storage = Calls()
    sessions = SessionMiddleware(initial=Count, storage=storage)
    with sessions.edit("job") as session:
        assert session == Count()
    assert "set" not in storage.calls and not storage.has("job")  # nothing changed: nothing written
    with sessions.edit("job") as session:
        session.n = 5
    assert stored(storage, "job") == {"n": 5}
    with pytest.raises(RuntimeError), sessions.edit("job") as session:
        session.n = 99
        raise RuntimeError("the job failed halfway")
    assert stored(storage, "job") == {"n": 5}
    assert len(table_for(storage.identity())) == 0


def test_get_is_a_copy_creates_nothing_and_holds_nothing() -> None:
    """get returns a copy of the stored session or None, and never writes or keeps a lock."""
    storage = Calls()
    sessions = SessionMiddleware(initial=Count, storage=storage)
    assert sessions.get("nobody") is None and storage.calls == ["get"] and not storage.has("nobody")
    with sessions.edit("k") as session:
        session.n = 3
    copy = sessions.get("k")
    assert copy == Count(3)
    assert copy is not None
    copy.n = 100
    assert sessions.get("k") == Count(3)
    assert len(table_for(storage.identity())) == 0


def test_delete_and_keys_see_only_their_own_sessions() -> None:
    """Middlewares sharing a storage (per chat, per user, another bot's prefix) list and delete only their own keys."""
    storage = MemoryStorage()
    chats = SessionMiddleware(initial=Count, storage=storage)
    users = SessionMiddleware(initial=Count, storage=storage, get_session_key=per_user, attr="user_session")
    other_bot = SessionMiddleware(initial=Count, storage=storage, prefix="bot-b:")
    bot = make_bot()
    for middleware in (chats, users):
        bot.setup_middleware(middleware)

    @bot.message_handler(func=lambda m: True)
    def touch(message: Any) -> None:
        chats.of(message).n += 1
        users.of(message).n += 1

    bot.process_new_updates([text_update("x", chat_id=c, user_id=u) for c, u in [(1, 1), (-5, 1), (-5, 2)]])
    with other_bot.edit("1") as session:
        session.n = 7
    assert sorted(chats.keys()) == ["-5", "1"]
    assert sorted(users.keys()) == ["user:1", "user:2"]
    assert list(other_bot.keys()) == ["1"] and stored(storage, "bot-b:1") == {"n": 7}
    assert chats.delete("-5") and not chats.delete("-5")
    assert sorted(chats.keys()) == ["1"] and other_bot.get("1") == Count(7)


def test_of_is_the_session_and_says_clearly_when_there_is_none(log_errors: pytest.LogCaptureFixture) -> None:
    """of(message) in a handler is its session; no key, or an object the middleware never saw, raise clear errors."""
    storage = MemoryStorage()
    sessions = SessionMiddleware(initial=Count, storage=storage)
    bot = make_bot()
    bot.setup_middleware(sessions)
    seen: list[Any] = []

    @bot.message_handler(func=lambda m: True)
    def handle(message: Any) -> None:
        seen.append(sessions.of(message) is message.session)
        sessions.of(message).n += 1

    @bot.inline_handler(func=lambda q: True)
    def inline(query: Any) -> None:
        try:
            sessions.of(query)
        except SessionKeyError as e:
            seen.append(str(e))

    bot.process_new_updates([text_update("x"), update(inline_query={"id": "1", "from": user(5), "query": "q", "offset": ""})])
    assert seen[0] is True and "no key" in seen[1]
    assert stored(storage, 42) == {"n": 1}
    never_seen = text_update("y").message
    with pytest.raises(SessionError, match="use_class_middlewares=True"):
        sessions.of(never_seen)


def test_editing_the_key_your_own_handler_holds_is_refused_not_deadlocked() -> None:
    """Inside an update's handler, edit() of that update's own key raises instead of waiting forever."""
    storage = MemoryStorage()
    sessions = SessionMiddleware(initial=Count, storage=storage)
    bot = make_bot()
    bot.setup_middleware(sessions)
    errors: list[str] = []

    @bot.message_handler(func=lambda m: True)
    def handle(message: Any) -> None:
        with sessions.edit(per_chat.key(9)) as other:  # another chat's session: fine
            other.n += 1
        try:
            with sessions.edit(message):
                pass
        except SessionKeyError as e:
            errors.append(str(e))

    bot.process_new_updates([text_update("x", chat_id=42)])
    assert stored(storage, 9) == {"n": 1}
    assert errors and "already held" in errors[0]


@pytest.mark.parametrize("chats", [2, 3], ids=["two chats", "three chats in a circle"])
def test_handlers_editing_each_others_sessions_are_refused_once_not_deadlocked(storage: SessionStorage, chats: int) -> None:
    """Each handler holds its chat and edits the next chat's session: one edit is refused, every other one goes through."""
    done = Counter()
    bot = make_bot(threaded=True, num_threads=chats)
    sessions = SessionMiddleware(initial=Count, storage=storage)
    bot.setup_middleware(sessions)
    bot.setup_middleware(Done(done))
    all_holding = threading.Barrier(chats, timeout=10)
    refused: list[tuple[int, str]] = []

    @bot.message_handler(func=lambda m: True)
    def handle(message: Any) -> None:
        all_holding.wait()  # every handler holds its own chat now
        nxt = message.chat.id % chats + 1
        try:
            with sessions.edit(per_chat.key(nxt)) as other:
                other.n += 10
        except SessionKeyError as e:
            refused.append((message.chat.id, str(e)))
        sessions.of(message).n += 1

    try:
        bot.process_new_updates([text_update("x", chat_id=c) for c in range(1, chats + 1)])
        done.wait(chats, timeout=20)
    finally:
        bot.stop_bot()
    assert len(refused) == 1, refused
    victim, message = refused[0]
    assert "would never end" in message and f"'{victim % chats + 1}'" in message
    for chat in range(1, chats + 1):  # every edit but the victim's landed, and every handler's own change
        edited = chat != victim % chats + 1
        assert stored(storage, chat) == {"n": 1 + 10 * edited}


def test_an_edit_waiting_on_a_parked_update_that_waits_for_it_is_refused() -> None:
    """The circle can pass through a parked update: it holds its chat (an earlier middleware) and waits for the user key we hold."""
    storage = MemoryStorage()
    done = Counter()
    bot = make_bot(threaded=True, num_threads=2)
    chat_sessions = SessionMiddleware(initial=Count, storage=storage)
    user_sessions = SessionMiddleware(initial=Count, storage=storage, get_session_key=per_user, attr="user_session")
    bot.setup_middleware(chat_sessions)
    bot.setup_middleware(user_sessions)
    bot.setup_middleware(Done(done))
    first_started = threading.Event()
    outcome: list[str] = []

    @bot.message_handler(func=lambda m: True)
    def handle(message: Any) -> None:
        user_sessions.of(message).n += 1
        if message.text != "first":
            return
        first_started.set()
        user_key = storage.identity(), per_user.key(7)
        deadline = time.monotonic() + 10
        while table_for(user_key[0]).waiting(user_key[1]) == 0 and time.monotonic() < deadline:
            time.sleep(0.001)  # until the second update holds chat 2 and parks on user 7
        try:
            with chat_sessions.edit(per_chat.key(2)):
                outcome.append("edited")
        except SessionKeyError as e:
            outcome.append(str(e))

    try:
        bot.process_new_updates([text_update("first", chat_id=1, user_id=7)])
        assert first_started.wait(10)
        bot.process_new_updates([text_update("second", chat_id=2, user_id=7)])
        done.wait(2, timeout=20)
    finally:
        bot.stop_bot()
    assert len(outcome) == 1 and "would never end" in outcome[0] and "a parked update" in outcome[0], outcome
    assert stored(storage, per_user.key(7)) == {"n": 2}  # the parked update ran once the first ended


def test_async_handlers_editing_each_others_sessions_are_refused_once() -> None:
    """The same circle between two AsyncTeleBot updates (tasks): one edit is refused, the loop never hangs."""
    import asyncio

    from telebot.async_telebot import AsyncTeleBot

    from telesession.asyncio import AsyncSessionMiddleware

    storage = MemoryStorage()
    sessions = AsyncSessionMiddleware(initial=Count, storage=storage)
    bot = AsyncTeleBot("123:TEST")
    bot.setup_middleware(sessions)
    refused: list[str] = []

    async def main() -> None:
        both_holding = asyncio.Barrier(2)

        @bot.message_handler(func=lambda m: True)
        async def handle(message: Any) -> None:
            await both_holding.wait()
            try:
                async with sessions.edit(per_chat.key(3 - message.chat.id)) as other:
                    other.n += 10
            except SessionKeyError as e:
                refused.append(str(e))
            sessions.of(message).n += 1

        await asyncio.wait_for(bot.process_new_updates([text_update("x", chat_id=1), text_update("x", chat_id=2)]), 10)

    asyncio.run(main())
    assert len(refused) == 1 and "would never end" in refused[0], refused
    assert sorted(stored(storage, c)["n"] for c in (1, 2)) == [1, 11]


def test_next_step_handlers_use_edit_with_the_same_guarantees() -> None:
    """A next-step handler (telebot runs it without middlewares) edits the session by its message, racing /count updates."""
    storage = MemoryStorage()
    done = Counter()
    bot, sessions = counting_bot(storage, done)
    stepped = Counter()

    @bot.message_handler(commands=["ask"])
    def ask(message: Any) -> None:
        bot.register_next_step_handler(message, answer)

    def answer(message: Any) -> None:  # no middleware ran for this message
        with pytest.raises(SessionError):
            sessions.of(message)
        with sessions.edit(message) as session:
            value = session.n
            time.sleep(0.001)
            session.n = value + 100
        stepped.add()

    for i in range(10):
        bot.process_new_updates([text_update("/ask", chat_id=3)])
        done.wait(6 * i + 1)  # the /ask ran: its next step is registered
        bot.process_new_updates([text_update("42", chat_id=3)] + [text_update("/count", chat_id=3) for _ in range(5)])
        stepped.wait(i + 1)
    done.wait(60)
    bot.stop_bot()
    assert stored(storage, 3) == {"n": 10 * 100 + 50}


def test_keys_from_ids_are_the_keys_of_the_updates() -> None:
    """per_chat.key(...) and the other helpers make from ids the very keys they give real updates."""
    message = updates.message("hi", chat_id=-1001, user_id=7).message
    topic = updates.topic_message("hi", chat_id=-1002, thread_id=9).message
    business = updates.business_message("hi", chat_id=5, connection_id="conn:1").business_message
    assert per_chat(message) == per_chat.key(-1001) == "-1001"
    assert per_user(message) == per_user.key(7) == "user:7"
    assert per_chat_user(message) == per_chat_user.key(-1001, 7) == "-1001:7"
    assert per_topic(topic) == per_topic.key(-1002, 9) == "-1002:topic:9"
    assert per_topic.key(-1002) == "-1002:topic:main"
    assert per_chat(business) == per_chat.key(5, business_connection_id="conn:1") != per_chat.key(5)
    for helper, key in [(per_chat, "-1001"), (per_user, "user:7"), (per_chat_user, "-1001:7"), (per_topic, "-1002:topic:9")]:
        assert helper.pattern.fullmatch(key)
        assert not any(other.pattern.fullmatch(key) for other in (per_chat, per_user, per_chat_user, per_topic) if other is not helper)


TYPED_BOT = '''
from dataclasses import dataclass
import telebot
from telesession import SessionMiddleware, MemoryStorage

@dataclass
class MySession:
    count: int = 0

bot = telebot.TeleBot("123:TEST", use_class_middlewares=True)
sessions = SessionMiddleware(initial=MySession, storage=MemoryStorage())
bot.setup_middleware(sessions)

@bot.message_handler(commands=["count"])
def count(message: telebot.types.Message) -> None:
    sessions.of(message).count += 1
    {extra}
'''


def test_of_is_typed_for_mypy(tmp_path: Path) -> None:
    """mypy --strict checks sessions.of(message): the README way type-checks, a misspelt field does not."""
    pytest.importorskip("mypy")
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(TYPED_BOT.format(extra="reveal_type(sessions.of(message))"))
    bad.write_text(TYPED_BOT.format(extra="sessions.of(message).cuont += 1"))
    command = [sys.executable, "-m", "mypy", "--strict", "--allow-untyped-decorators", "--ignore-missing-imports", "--no-incremental", "--cache-dir", str(tmp_path / "c")]
    checked = subprocess.run([*command, str(good)], capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0 and "MySession" in checked.stdout, checked.stdout + checked.stderr
    refused = subprocess.run([*command, str(bad)], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and '"MySession" has no attribute "cuont"' in refused.stdout, refused.stdout
