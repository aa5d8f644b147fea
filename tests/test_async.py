"""AsyncSessionMiddleware through a real AsyncTeleBot: exact counts, no blocked loop, no lock outliving its update."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from telebot.async_telebot import AsyncTeleBot
from telebot.asyncio_handler_backends import BaseMiddleware, CancelUpdate

from telesession import FileStorage, MemoryStorage, SessionMiddleware, SessionStorage, per_chat
from telesession._locks import table_for
from telesession.asyncio import AsyncSessionMiddleware
from telesession.storage.base import JSONValue, Lease

from .conftest import STORAGE_KINDS, stored, text_update, update, user


@dataclass
class Count:
    n: int = 0


def counting_bot(storage: SessionStorage, **options: Any) -> tuple[AsyncTeleBot, AsyncSessionMiddleware[Count]]:
    bot = AsyncTeleBot("123:TEST")
    sessions = AsyncSessionMiddleware(initial=Count, storage=storage, **options)
    bot.setup_middleware(sessions)

    @bot.message_handler(func=lambda m: True)
    async def count(message: Any) -> None:
        session = sessions.of(message)
        value = session.n
        await asyncio.sleep(0)  # every other update of the batch runs here: a lost update needs only this
        session.n = value + 1

    return bot, sessions


def test_a_batch_of_concurrent_updates_loses_nothing(storage: SessionStorage) -> None:
    """AsyncTeleBot runs a batch's updates at once: 3 chats x 60 in one batch, then more batches: exact counts."""
    bot, _ = counting_bot(storage)

    async def main() -> None:
        for _ in range(3):
            await bot.process_new_updates([text_update("x", chat_id=c) for _ in range(20) for c in range(3)])

    asyncio.run(main())
    assert [stored(storage, c) for c in range(3)] == [{"n": 60}] * 3
    assert len(table_for(storage.identity())) == 0


def _async_worker(kind: str, directory: str, rounds: int) -> None:
    storage = STORAGE_KINDS[kind](Path(directory))
    bot, _ = counting_bot(storage)

    async def main() -> None:
        for _ in range(rounds):
            await bot.process_new_updates([text_update("x", chat_id=c) for _ in range(5) for c in range(2)])

    asyncio.run(main())
    storage.close()


def test_processes_of_async_bots_lose_nothing(persistent_kind: str, tmp_path: Path) -> None:
    """3 processes, each an AsyncTeleBot on one storage, 2 chats: every increment of every process lands."""
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_async_worker, args=(persistent_kind, str(tmp_path), 8)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(180)
        assert w.exitcode == 0
    with STORAGE_KINDS[persistent_kind](tmp_path) as storage:
        assert [stored(storage, c) for c in range(2)] == [{"n": 3 * 8 * 5}] * 2


def test_a_waiting_chat_never_blocks_the_loop() -> None:
    """One chat's handler waits on an event: the other chats of the batch finish meanwhile, the waiting chat's next update waits for it."""
    storage = MemoryStorage()
    bot = AsyncTeleBot("123:TEST")
    bot.setup_middleware(AsyncSessionMiddleware(initial=lambda: {"seen": []}, storage=storage))
    gate = asyncio.Event
    finished: list[str] = []

    async def main() -> None:
        release = gate()

        @bot.message_handler(func=lambda m: True)
        async def handle(message: Any) -> None:
            if message.text == "wait":
                await release.wait()
            message.session["seen"].append(message.text)
            finished.append(f"{message.chat.id}:{message.text}")

        batch = [text_update("wait", chat_id=1), text_update("after", chat_id=1)] + [text_update("x", chat_id=c) for c in range(2, 12)]
        running = asyncio.create_task(bot.process_new_updates(batch))
        while len(finished) < 10:
            await asyncio.sleep(0.001)
        assert "1:after" not in finished and storage.get("1") is None
        release.set()
        await running

    asyncio.run(main())
    assert stored(storage, 1) == {"seen": ["wait", "after"]}
    assert finished[-2:] == ["1:wait", "1:after"]


class Trouble(BaseMiddleware):
    """Registered after the session middleware: cancels or raises on chosen texts."""

    update_types = ["message"]

    async def pre_process(self, message: Any, data: dict[str, Any]) -> CancelUpdate | None:
        if message.text == "cancel":
            return CancelUpdate()
        if message.text == "raise":
            raise RuntimeError("a later middleware failed")
        return None

    async def post_process(self, message: Any, data: dict[str, Any], exception: Any) -> None:
        pass


@pytest.mark.parametrize("text", ["cancel", "raise"])
def test_cancelled_or_raising_updates_release_their_lock_at_once(text: str, tmp_path: Path) -> None:
    """AsyncTeleBot skips post_process when a later middleware cancels or raises: the key is free for the next update."""
    storage = FileStorage(tmp_path)
    bot, _ = counting_bot(storage)
    bot.setup_middleware(Trouble())

    async def main() -> None:
        try:
            await bot.process_new_updates([text_update(text, chat_id=5)])
        except RuntimeError:
            assert text == "raise"
        await asyncio.wait_for(bot.process_new_updates([text_update("next", chat_id=5)]), 2)

    asyncio.run(main())
    assert stored(storage, 5) == {"n": 1}
    assert len(table_for(storage.identity())) == 0


def test_a_cancelled_task_releases_its_lock_and_its_waiters_go_on() -> None:
    """Cancelling the task of an update that holds its key (and of one waiting for it) leaves no lock behind."""
    storage = MemoryStorage()
    bot = AsyncTeleBot("123:TEST")
    bot.setup_middleware(AsyncSessionMiddleware(initial=lambda: {"n": 0}, storage=storage))
    started = []

    async def main() -> None:
        @bot.message_handler(func=lambda m: True)
        async def handle(message: Any) -> None:
            started.append(message.text)
            if message.text == "hang":
                await asyncio.sleep(3600)
            message.session["n"] += 1

        running = asyncio.create_task(bot.process_new_updates([text_update("hang", chat_id=1), text_update("waits", chat_id=1)]))
        while not started:
            await asyncio.sleep(0.001)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await asyncio.sleep(0.01)  # the done callbacks' releases run
        await asyncio.wait_for(bot.process_new_updates([text_update("next", chat_id=1)]), 2)

    asyncio.run(main())
    assert stored(storage, 1) == {"n": 1} and started == ["hang", "next"]
    assert len(table_for(storage.identity())) == 0


def test_edit_get_delete_keys_from_async_code_race_handlers_exactly(storage: SessionStorage) -> None:
    """async with edit() from a job task, racing the bot's handlers on one chat: exact counts; get, keys and delete agree."""
    bot, sessions = counting_bot(storage)

    async def job() -> None:
        for _ in range(30):
            async with sessions.edit(per_chat.key(1)) as session:
                value = session.n
                await asyncio.sleep(0)
                session.n = value + 1

    async def main() -> None:
        await asyncio.gather(job(), job(), *(bot.process_new_updates([text_update("x", chat_id=1) for _ in range(10)]) for _ in range(3)))
        assert await sessions.get("1") == Count(90)
        assert await sessions.get("nobody") is None
        assert [key async for key in sessions.keys()] == ["1"]
        assert await sessions.delete("1") and not await sessions.delete("1")

    asyncio.run(main())
    assert storage.get("1") is None


def test_lazy_async_sessions_load_on_request() -> None:
    """lazy=True: nothing loaded until `await load(message)`; then held, saved if changed."""
    storage = MemoryStorage()
    bot = AsyncTeleBot("123:TEST")
    sessions = AsyncSessionMiddleware(initial=Count, storage=storage, lazy=True)
    bot.setup_middleware(sessions)
    held: list[int] = []
    table = table_for(storage.identity())

    @bot.message_handler(commands=["count"])
    async def count(message: Any) -> None:
        (await sessions.load(message)).n += 1
        held.append(len(table))
        sessions.of(message).n += 1

    @bot.message_handler(commands=["ignore"])
    async def ignore(message: Any) -> None:
        held.append(len(table))

    asyncio.run(bot.process_new_updates([text_update("/ignore"), text_update("/count"), text_update("/count")]))
    assert stored(storage, 42) == {"n": 4} and held == [0, 1, 1]


def test_migrations_ttl_prefix_and_quarantine_behave_as_in_the_sync_middleware() -> None:
    """The engine's options mean the same for async bots."""
    storage = MemoryStorage()
    storage.set("bot:1", {"data": {"old": 2}, "schema": 0, "saved_at": 1e12})
    storage.set("bot:2", ["not", "a", "record"])
    bot = AsyncTeleBot("123:TEST")
    bot.setup_middleware(
        AsyncSessionMiddleware(
            initial=Count, storage=storage, prefix="bot:", ttl=3600, on_unreadable="quarantine",
            migrations={1: lambda d: {"n": d.pop("old")}},
        )
    )

    @bot.message_handler(func=lambda m: True)
    async def count(message: Any) -> None:
        message.session.n += 1

    storage.set("bot:3", {"data": {"n": 50}, "schema": 1, "saved_at": 1.0})  # long expired
    asyncio.run(bot.process_new_updates([text_update("x", chat_id=c) for c in (1, 2, 3)]))
    assert stored(storage, "bot:1") == {"n": 3} and storage.get("bot:1")["schema"] == 1
    assert stored(storage, "bot:2") == {"n": 1} and stored(storage, "bot:3") == {"n": 1}
    assert [k for k in storage.keys() if k.startswith("bot:quarantine:")]


def test_blocking_storages_never_run_on_the_loop(tmp_path: Path) -> None:
    """A FileStorage under the async middleware: every blocking call runs off the event loop's thread."""
    on_loop: list[str] = []
    loop_thread: list[int] = []

    class Watched(FileStorage):
        def get(self, key: str) -> JSONValue | None:
            self._check("get")
            return super().get(key)

        def set(self, key: str, value: JSONValue) -> None:
            self._check("set")
            super().set(key, value)

        def acquire(self, key: str, *, blocking: bool = True) -> Lease | None:
            self._check("acquire")
            return super().acquire(key, blocking=blocking)

        def _check(self, verb: str) -> None:
            if threading.get_ident() in loop_thread:
                on_loop.append(verb)

    storage = Watched(tmp_path)
    bot, sessions = counting_bot(storage)

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        await bot.process_new_updates([text_update("x", chat_id=c) for _ in range(3) for c in range(3)])
        async with sessions.edit("1") as session:
            session.n += 10
        assert await sessions.get("1") == Count(13)

    asyncio.run(main())
    assert on_loop == [] and stored(storage, 0) == {"n": 3}


def test_the_sync_middleware_on_an_async_bot_names_the_async_one(caplog: pytest.LogCaptureFixture) -> None:
    """SessionMiddleware given to AsyncTeleBot: a TypeError that says to use AsyncSessionMiddleware."""
    caplog.set_level(logging.ERROR)
    bot = AsyncTeleBot("123:TEST")
    bot.setup_middleware(SessionMiddleware(initial=Count, storage=MemoryStorage()))
    bot.message_handler(func=lambda m: True)(lambda m: None)
    with pytest.raises(TypeError, match="AsyncSessionMiddleware"):
        asyncio.run(bot.process_new_updates([text_update("x")]))


def test_no_key_gives_no_session_and_the_handler_runs() -> None:
    """An inline query has no chat: session None, the handler still runs, nothing stored."""
    storage = MemoryStorage()
    bot = AsyncTeleBot("123:TEST")
    bot.setup_middleware(AsyncSessionMiddleware(initial=Count, storage=storage))
    got: list[Any] = []

    @bot.inline_handler(func=lambda q: True)
    async def inline(query: Any, session: Any) -> None:
        got.append((query.session, session))

    asyncio.run(bot.process_new_updates([update(inline_query={"id": "1", "from": user(5), "query": "q", "offset": ""})]))
    assert got == [(None, None)] and list(storage.keys()) == []


def test_async_polling_over_http_keeps_exact_counts(storage: SessionStorage) -> None:
    """A real AsyncTeleBot polling the Bot API stand-in over HTTP: users at once, a double tap, exact counts."""
    from telesession.testing import FakeBotAPI, serve_async_bot

    from .test_e2e import run_threads

    bot = AsyncTeleBot("123:TEST")
    sessions = AsyncSessionMiddleware(initial=Count, storage=storage)
    bot.setup_middleware(sessions)

    @bot.message_handler(commands=["count"])
    async def count(message: Any) -> None:
        session = sessions.of(message)
        value = session.n
        await asyncio.sleep(0)  # the batch's other updates run here
        session.n = value + 1

    @bot.message_handler(commands=["show"])
    async def show(message: Any) -> None:
        await bot.send_message(message.chat.id, f"n={sessions.of(message).n}")

    with FakeBotAPI() as api, serve_async_bot(api, bot):
        users = [api.user() for _ in range(5)]
        run_threads(*(lambda u=u: [u.send(f"/count {i}") for i in range(20)] for u in users))
        for user in users:
            user.send("/show")  # after its /counts: a later batch, or later in the same one
        for user in users:
            assert user.wait_for_reply("n=", timeout=10).text == "n=20"
    assert [stored(storage, u.id) for u in users] == [{"n": 20}] * 5


def test_the_async_example_counts_and_fills_a_cart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/async_bot.py, unchanged, over HTTP: /count counts per chat and the cart button adds."""
    import runpy

    from telesession.testing import FakeBotAPI, serve_async_bot

    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:TEST")
    monkeypatch.chdir(tmp_path)
    example = runpy.run_path(str(Path(__file__).resolve().parent.parent / "examples" / "async_bot.py"), run_name="example")
    with FakeBotAPI() as api, serve_async_bot(api, example["bot"]):
        alice, bob = api.user(first_name="Alice"), api.user(first_name="Bob")
        assert alice.ask("/count").text == "Count: 1"
        assert alice.ask("/count").text == "Count: 2"
        assert bob.ask("/count").text == "Count: 1"
        menu = alice.ask("/shop")
        alice.press(menu, "Add apple")
        alice.press(menu, "Add apple")
        assert api.wait_for_edit(menu).text == "Your cart: apple x1"
        assert api.wait_for_edit(menu).text == "Your cart: apple x2"
    example["sessions"].storage.close()
