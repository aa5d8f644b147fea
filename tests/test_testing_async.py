"""telesession.testing serves AsyncTeleBots: real async polling over aiohttp against the fake Bot API.

Tests stay plain functions: serve_async_bot runs the bot's loop in a thread, and the simulated
users' waits block only the test. Warnings are errors (pytest's filterwarnings), so a leaked
aiohttp session or a never-awaited coroutine fails the test that caused it.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from telebot import TeleBot, apihelper, types

from telesession.testing import FakeBotAPI, patched_api_url, serve_async_bot, serve_bot

pytest.importorskip("aiohttp")  # AsyncTeleBot's HTTP client
from telebot import asyncio_helper  # noqa: E402
from telebot.async_telebot import AsyncTeleBot  # noqa: E402

TOKEN = "123:TEST"


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    with FakeBotAPI() as fake:
        yield fake
    gc.collect()  # an unclosed aiohttp session warns when collected: here, inside the test
    assert not [t for t in threading.enumerate() if t.name.startswith("async polling")]


def counter_bot(handled: list[str] | None = None) -> AsyncTeleBot:
    """An async bot with a counter per chat (in a dict) and an inline button that resets it."""
    bot = AsyncTeleBot(TOKEN)
    counts: dict[int, int] = {}

    @bot.message_handler(commands=["count"])
    async def count(message: types.Message) -> None:
        counts[message.chat.id] = counts.get(message.chat.id, 0) + 1
        if handled is not None:
            handled.append(message.text)
        await bot.send_message(message.chat.id, f"Count: {counts[message.chat.id]}",
                               message_thread_id=message.message_thread_id)

    @bot.message_handler(commands=["reset"])
    async def reset(message: types.Message) -> None:
        keyboard = types.InlineKeyboardMarkup()
        keyboard.add(types.InlineKeyboardButton("Yes, reset", callback_data="reset"))
        await bot.send_message(message.chat.id, "Reset the counter?", reply_markup=keyboard)

    @bot.callback_query_handler(func=lambda call: call.data == "reset")
    async def do_reset(call: types.CallbackQuery) -> None:
        counts.pop(call.message.chat.id, None)
        await bot.edit_message_text("Counter reset.", call.message.chat.id, call.message.message_id)
        await bot.answer_callback_query(call.id, "Done")

    return bot


def test_async_bot_counts_presses_buttons_and_answers_in_groups(api: FakeBotAPI) -> None:
    """A user counts, taps an inline button (answered), and a group member asks: all over HTTP."""
    with serve_async_bot(api, counter_bot()):
        alice, bob = api.user(first_name="Alice"), api.user(first_name="Bob")
        assert alice.ask("/count").text == "Count: 1"
        assert alice.ask("/count").text == "Count: 2"
        question = alice.ask("/reset")
        query = alice.press(question, "Yes, reset")
        assert api.wait_for_edit(question).text == "Counter reset."
        (answer,) = api.wait_for_calls("answerCallbackQuery")
        assert (answer.status, answer.params) == (200, {"callback_query_id": query.id, "text": "Done"})
        assert alice.ask("/count").text == "Count: 1"

        group = api.group("Friends")
        assert group.ask(bob, "/count").text == "Count: 1"
        assert group.ask(alice, "/count", "Count: 2").text == "Count: 2"
        forum = api.group("Dev", forum=True)
        in_topic = forum.ask(bob, "/count", topic=5)
        assert (in_topic.text, in_topic.message_thread_id) == ("Count: 1", 5)
        assert all(call.status == 200 for call in api.calls())


def test_requests_are_read_as_from_the_sync_client(api: FakeBotAPI) -> None:
    """aiohttp's GET-with-form and multipart bodies give the same typed parameters; files download."""
    file_id = api.add_file(b"hello")
    bot = AsyncTeleBot(TOKEN)
    with serve_async_bot(api, bot) as served:
        user = api.user()
        keyboard = types.InlineKeyboardMarkup()
        keyboard.add(types.InlineKeyboardButton("Go", callback_data="go"))
        sent = served.run(bot.send_message(user.id, "42", reply_markup=keyboard, disable_notification=True))
        assert sent.reply_markup.keyboard[0][0].callback_data == "go"
        served.run(bot.send_document(user.id, b"abc", caption="doc", visible_file_name="a.txt"))
        found = served.run(bot.get_file(file_id))
        assert served.run(bot.download_file(found.file_path)) == b"hello"
    (message,) = api.calls("sendMessage")
    assert message.params == {"chat_id": user.id, "text": "42", "disable_notification": "True",
                              "reply_markup": {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}}
    (document,) = api.calls("sendDocument")
    assert document.params == {"chat_id": user.id, "caption": "doc", "document": {"filename": "a.txt", "size": 3}}
    assert api.calls("getUpdates")[0].params["timeout"] == 1


def test_stop_is_prompt_and_a_restart_handles_each_update_once(api: FakeBotAPI) -> None:
    """Stopping wakes the long poll; updates sent while stopped reach the restarted bot once."""
    handled: list[str] = []
    bot = counter_bot(handled)
    user = api.user()
    with serve_async_bot(api, bot, long_polling_timeout=30):
        assert user.ask("/count 1").text == "Count: 1"
        api.wait_for_calls("getUpdates", count=2)  # the next long poll is pending
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 2  # not the 30 s long poll
    assert api.pending_updates() == 0

    user.send("/count 2")  # nobody polls: it waits in the queue
    with serve_async_bot(api, bot):  # the same bot, on a new loop
        assert user.wait_for_reply().text == "Count: 2"
    with serve_async_bot(api, counter_bot(handled)):  # a new bot: a fresh counter, no old update
        assert user.ask("/count 3").text == "Count: 1"
    assert handled == ["/count 1", "/count 2", "/count 3"]
    assert api.pending_updates() == 0


def test_get_updates_failures_are_recovered_by_async_polling(api: FakeBotAPI) -> None:
    """getUpdates answered 502 then 500: telebot backs off, polls again, and every update is handled once."""
    api.fail_next("getUpdates", 502)
    api.fail_next("getUpdates", 500)
    with serve_async_bot(api, counter_bot()):
        users = [api.user() for _ in range(4)]
        for _ in range(3):
            for user in users:
                user.send("/count")
        for user in users:
            assert sorted(user.wait_for_reply().text for _ in range(3)) == ["Count: 1", "Count: 2", "Count: 3"]
        assert [c.status for c in api.calls("getUpdates")][:3] == [502, 500, 200]
    assert len(api.calls("sendMessage")) == 12  # none lost, none twice


def test_crashed_polling_is_raised_on_exit_and_its_session_closed(api: FakeBotAPI) -> None:
    """getMe fails: polling crashes; the block ends with RuntimeError, no unclosed session left behind."""
    api.fail_next("getMe", 401, description="Unauthorized")
    with pytest.raises(RuntimeError, match=r"polling crashed: .*401.*Unauthorized") as raised:
        with serve_async_bot(api, counter_bot()) as served:
            api.wait_for_calls("getMe")
            session = served.run(_current_session())
    assert session is not None and session.closed
    assert isinstance(raised.value.__cause__, asyncio_helper.ApiTelegramException)

    api.fail_next("getMe", 401)
    with pytest.raises(ZeroDivisionError) as failed:  # the block's own error wins; the crash is a note
        with serve_async_bot(api, counter_bot()):
            api.wait_for_calls("getMe", count=2)
            1 / 0
    assert any("polling crashed" in note for note in failed.value.__notes__)


async def _current_session() -> Any:
    return asyncio_helper.session_manager.session


def test_in_flight_handlers_and_their_tasks_finish_before_exit(api: FakeBotAPI) -> None:
    """Exit waits for a running handler and a task it started, then closes the session they used."""
    bot = AsyncTeleBot(TOKEN)
    done: list[str] = []

    async def later(chat_id: int) -> None:
        await asyncio.sleep(0.2)
        await bot.send_message(chat_id, "later")  # after polling has stopped
        done.append("task")

    @bot.message_handler(commands=["slow"])
    async def slow(message: types.Message) -> None:
        asyncio.get_running_loop().create_task(later(message.chat.id))  # fire and forget
        await bot.send_message(message.chat.id, "working")
        await asyncio.sleep(0.1)
        done.append("handler")

    user = api.user()
    with serve_async_bot(api, bot) as served:
        user.ask("/slow")
        session = served.run(_current_session())
    assert done == ["handler", "task"]
    assert session.closed
    assert [m.text for m in api.messages(user.id)] == ["working", "later"]


def test_requests_in_flight_when_polling_stops_complete(api: FakeBotAPI) -> None:
    """A handler sending while the bot stops is not cut off: its session stays open until it is done."""
    bot = AsyncTeleBot(TOKEN)

    @bot.message_handler(commands=["flood"])
    async def flood(message: types.Message) -> None:
        for n in range(200):
            await bot.send_message(message.chat.id, str(n))

    user = api.user()
    with serve_async_bot(api, bot, stop_timeout=5):
        user.send("/flood")
        user.wait_for_reply("0")  # exit while the next sends are on the wire
    assert [c.status for c in api.calls("sendMessage")] == [200] * 200


def test_a_handler_that_never_returns_is_cancelled_and_reported(api: FakeBotAPI) -> None:
    """A handler still running at stop_timeout is cancelled; the exit says so, and still ends promptly."""
    bot = AsyncTeleBot(TOKEN)
    cancelled = threading.Event()

    @bot.message_handler(commands=["hang"])
    async def hang(message: types.Message) -> None:
        await bot.send_message(message.chat.id, "hanging")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"task .* still running after 0.3s"):
        with serve_async_bot(api, bot, stop_timeout=0.3):
            api.user().ask("/hang")
    assert cancelled.is_set()
    assert time.monotonic() - started < 5


def test_bot_loop_runs_coroutines_on_the_bots_loop(api: FakeBotAPI) -> None:
    """BotLoop.run returns a coroutine's result from the bot's loop, raises its error, and times out."""
    with serve_async_bot(api, AsyncTeleBot(TOKEN)) as served:
        async def where() -> tuple[asyncio.AbstractEventLoop, str]:
            return asyncio.get_running_loop(), threading.current_thread().name

        loop, thread = served.run(where())
        assert loop is served.loop and thread.startswith("async polling:123")
        with pytest.raises(asyncio_helper.ApiTelegramException, match="message text is empty"):
            served.run(served.bot.send_message(1, ""))
        with pytest.raises(TimeoutError, match="did not finish within 0.1s"):
            served.run(asyncio.sleep(5), timeout=0.1)


def test_patched_api_url_points_the_asyncio_client_too(api: FakeBotAPI) -> None:
    """patched_api_url sets and restores asyncio_helper's URLs along with apihelper's."""
    before = asyncio_helper.API_URL, asyncio_helper.FILE_URL, apihelper.API_URL
    with patched_api_url(api):
        assert (asyncio_helper.API_URL, asyncio_helper.FILE_URL) == (api.api_url, api.file_url)
        assert apihelper.API_URL == api.api_url
    assert (asyncio_helper.API_URL, asyncio_helper.FILE_URL, apihelper.API_URL) == before
    with serve_async_bot(api, AsyncTeleBot(TOKEN)):
        assert asyncio_helper.API_URL == api.api_url
    assert (asyncio_helper.API_URL, asyncio_helper.FILE_URL, apihelper.API_URL) == before


def test_each_runner_refuses_the_other_kind_of_bot(api: FakeBotAPI) -> None:
    """serve_bot wants a TeleBot and serve_async_bot an AsyncTeleBot: the wrong one says which to use."""
    with pytest.raises(TypeError, match=r"runs a TeleBot, not AsyncTeleBot: use serve_async_bot"):
        with serve_bot(api, AsyncTeleBot(TOKEN)):  # type: ignore[arg-type]
            pass
    with pytest.raises(TypeError, match=r"runs an AsyncTeleBot, not TeleBot: use serve_bot"):
        with serve_async_bot(api, TeleBot(TOKEN)):  # type: ignore[arg-type]
            pass
