"""Run an AsyncTeleBot's polling against a FakeBotAPI, on an event loop of its own in a thread.

Only this module knows AsyncTeleBot, and it imports telebot's asyncio client (hence aiohttp)
only when a bot is served.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ._api import FakeBotAPI
from ._run import ALL_UPDATES, patched_api_url

if TYPE_CHECKING:
    from telebot.async_telebot import AsyncTeleBot

T = TypeVar("T")

_ASYNCIO_DIR = os.path.dirname(asyncio.__file__)

# How long a stopping bot may take to leave its polling loop by itself before it is cancelled:
# a released long poll answers at once, but telebot may be asleep in its error back-off.
_POLLING_GRACE = 1.0


class BotLoop:
    """The event loop, in a thread of its own, that :func:`serve_async_bot` runs a bot on.

    ``bot`` is the bot served and ``loop`` its loop, running until the ``with`` block ends.
    """

    def __init__(self, bot: AsyncTeleBot, loop: asyncio.AbstractEventLoop) -> None:
        self.bot = bot
        self.loop = loop

    def __repr__(self) -> str:
        return f"BotLoop({self.bot.token.split(':')[0]}, running={self.loop.is_running()})"

    def run(self, coro: Coroutine[Any, Any, T], *, timeout: float = 10.0) -> T:
        """Run ``coro`` on the bot's loop and return its result (or raise its exception).

        For what belongs to that loop: calling the bot (``served.run(bot.send_message(chat_id,
        "hi"))``, which uses the loop's HTTP session), or async clients its handlers share.
        After ``timeout`` seconds the coroutine is cancelled and TimeoutError raised. Never
        call it from the bot's own loop (a handler): it would wait for itself.
        """
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the loop is closed: the block has ended
            coro.close()
            raise RuntimeError("BotLoop.run: the bot's loop is closed (serve_async_bot's block has ended)") from None
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(f"BotLoop.run: {coro!r} did not finish within {timeout}s") from None


class _Polling:
    """The loop thread's side of serve_async_bot: polls, then stops within the deadline it is given."""

    def __init__(self, api: FakeBotAPI, bot: AsyncTeleBot, polling_options: dict[str, Any]) -> None:
        self.api = api
        self.bot = bot
        self.options = polling_options
        self.started = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_requested: asyncio.Event | None = None
        self.running = False  # polling was started: the test may go on
        self.deadline = 0.0  # set by the test's thread before it asks to stop
        self.crashed: list[BaseException] = []
        self.stuck: list[str] = []

    def thread_main(self) -> None:
        try:
            asyncio.run(self.main())
        except BaseException as e:  # a bug of ours, most likely: reported on exit all the same
            self.crashed.append(e)
        finally:
            self.started.set()  # when main() failed before it got there

    async def main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_requested = asyncio.Event()
        # Polling closes the bot's aiohttp session as it stops, under handlers still sending:
        # their requests would hang on a dead connection. Keep it open until they are done.
        untyped: Any = self.bot
        own = vars(untyped).get("close_session")
        untyped.close_session = _keep_session_open
        try:
            poller = asyncio.create_task(self.bot.polling(**self.options), name="polling")
            self.running = True
            self.started.set()
            await self.stop_requested.wait()
            await self._stop(poller)
            await self._finish_tasks()
        finally:
            if own is None:
                del untyped.close_session
            else:
                untyped.close_session = own
            await self._close_session()

    async def _stop(self, poller: asyncio.Task[None]) -> None:
        untyped: Any = self.bot  # AsyncTeleBot has no stop_polling(): its loop runs while _polling is true
        grace = min(self.deadline, time.monotonic() + _POLLING_GRACE)
        # polling() sets _polling when it starts (after getMe): a stop that came first would be
        # lost, so clear it again until the task is done.
        while not poller.done() and time.monotonic() < grace:
            untyped._polling = False
            await asyncio.wait({poller}, timeout=0.02)
        if not poller.done():
            poller.cancel()  # asleep between failed polls: nothing in flight to lose
            await asyncio.wait({poller}, timeout=max(0.0, self.deadline - time.monotonic()))
        if not poller.done():
            self.stuck.append("polling")
            return
        error = None if poller.cancelled() else poller.exception()
        if error is not None:
            self.crashed.append(error)

    async def _finish_tasks(self) -> None:
        """Wait for the updates still being handled (and any task they started), cancel what overruns."""
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, self.deadline - time.monotonic()))
        for task in pending:
            self.stuck.append(f"task {task.get_name()} ({_where(task)})")
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)

    async def _close_session(self) -> None:
        # AsyncTeleBot keeps one aiohttp session per thread (per process in older releases) in
        # asyncio_helper.session_manager: close the one this loop used.
        from telebot import asyncio_helper

        session = asyncio_helper.session_manager.session
        if session is not None and not session.closed:
            await session.close()
        await asyncio.sleep(0)  # let the closed connections' transports go before the loop does


async def _keep_session_open() -> None:
    """Stands in for ``AsyncTeleBot.close_session`` while the bot is served."""


def _where(task: asyncio.Task[Any]) -> str:
    """Where a task waits: its innermost coroutine outside asyncio, as ``name at file:line``."""
    found = repr(task.get_coro())
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None)
        if frame is not None and not frame.f_code.co_filename.startswith(_ASYNCIO_DIR):
            found = f"{coro.__qualname__} at {os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
        coro = getattr(coro, "cr_await", None)
    return found


@contextmanager
def serve_async_bot(
    api: FakeBotAPI,
    bot: AsyncTeleBot,
    *,
    long_polling_timeout: int = 1,
    allowed_updates: list[str] | None = ALL_UPDATES,
    stop_timeout: float = 10.0,
) -> Iterator[BotLoop]:
    """Run ``await bot.polling(...)`` of an AsyncTeleBot against ``api`` for the duration of the block.

    The bot runs on a new event loop in a thread of its own, so a test of an async bot reads
    like one of a sync bot: a plain ``def test_...``, the same simulated users and the same
    blocking waits (``alice.ask("/count")``), which block the test's thread and never the
    bot's loop; no async test plugin needed. (Async versions of every wait, with the bot on the
    test's loop, would double the toolkit and make each step ``(await alice.ask(...)).text``.)
    To run something on the bot's loop (call the bot directly, say), use the yielded
    :class:`BotLoop`: ``served.run(bot.send_message(chat_id, "hi"))``.

    Polls with ``non_stop=True`` (API errors are logged and retried) and asks for
    ``allowed_updates`` (every type by default). On exit it stops polling, wakes the pending
    long poll (so stopping takes no ``long_polling_timeout``), awaits the polling task, waits
    for the updates still being handled and any task they started (cancelling those still
    running after ``stop_timeout`` seconds), closes the bot's aiohttp session (only then:
    telebot would close it as polling stops, under handlers still sending) and the loop, and
    confirms the updates the bot took, as its next ``getUpdates`` would have.

    A stopped AsyncTeleBot can be served again (on a new loop: async objects it keeps must not
    be bound to the old one). On exit, raises RuntimeError when polling crashed (say,
    ``getMe`` failed) or something was still running after ``stop_timeout`` seconds; when the
    block itself raised, these are added to its exception as notes instead.
    """
    if not inspect.iscoroutinefunction(bot.polling):
        raise TypeError(f"serve_async_bot() runs an AsyncTeleBot, not {type(bot).__name__}: use serve_bot()")
    polling = _Polling(api, bot, {
        "non_stop": True, "interval": 0, "timeout": long_polling_timeout,
        "request_timeout": long_polling_timeout + 10, "allowed_updates": allowed_updates,
    })
    thread = threading.Thread(target=polling.thread_main, name=f"async polling:{bot.token.split(':')[0]}",
                              daemon=True)

    def stop() -> list[str]:
        """Stop everything within stop_timeout; returns what went wrong."""
        api.release_polls(bot.token)
        polling.deadline = time.monotonic() + stop_timeout
        loop, event = polling.loop, polling.stop_requested
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop closed meanwhile: nothing left to stop
                pass
        # The loop keeps to the deadline itself; the extra second covers its cancellations.
        thread.join(stop_timeout + 2.0)
        offset = bot.offset
        if offset:
            api.confirm(offset)
        if not thread.is_alive():
            api.hold_polls(bot.token)  # nobody polls with it now: leave the api as it was
        problems = [f"polling crashed: {e!r}" for e in polling.crashed[:1]]
        problems += [f"{what} still running after {stop_timeout}s" for what in polling.stuck]
        if thread.is_alive() and not polling.stuck:
            problems.append(f"{thread.name} still running after {stop_timeout}s")
        return problems

    with patched_api_url(api):
        api.hold_polls(bot.token)
        thread.start()
        polling.started.wait()
        if not polling.running or polling.loop is None:
            thread.join()
            raise RuntimeError("serve_async_bot: polling did not start") from (
                polling.crashed[0] if polling.crashed else None)
        try:
            yield BotLoop(bot, polling.loop)
        except BaseException as e:
            for problem in stop():  # likely why the block failed: say so next to its error
                e.add_note(f"serve_async_bot: {problem}")
            raise
        problems = stop()
        if problems:
            raise RuntimeError("serve_async_bot: " + "; ".join(problems)) from (
                polling.crashed[0] if polling.crashed else None)
