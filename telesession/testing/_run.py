"""Point telebot at a FakeBotAPI, and run a polling bot in a thread that stops cleanly."""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import telebot
from telebot import apihelper, util

from ._api import FakeBotAPI

#: Every update type, so chat_member and reactions arrive too (Telegram's default leaves them out).
ALL_UPDATES: list[str] = list(util.update_types)


@contextmanager
def patched_api_url(api: FakeBotAPI) -> Iterator[FakeBotAPI]:
    """Send every telebot request (and file download) of this process to ``api`` while inside.

    Sets the module globals ``API_URL``/``FILE_URL`` of ``telebot.apihelper`` (TeleBot) and,
    when aiohttp is installed, of ``telebot.asyncio_helper`` (AsyncTeleBot), and restores the
    previous values on exit, so it nests. Process-wide: two tests running at once in one
    process would clash.
    """
    modules: list[Any] = [apihelper]
    try:
        from telebot import asyncio_helper  # imports aiohttp, which only AsyncTeleBot needs
    except ImportError:
        pass
    else:
        modules.append(asyncio_helper)
    saved = [(module.API_URL, module.FILE_URL) for module in modules]
    for module in modules:
        module.API_URL, module.FILE_URL = api.api_url, api.file_url
    try:
        yield api
    finally:
        for module, (api_url, file_url) in zip(modules, saved):
            module.API_URL, module.FILE_URL = api_url, file_url


@contextmanager
def serve_bot(
    api: FakeBotAPI,
    bot: telebot.TeleBot,
    *,
    long_polling_timeout: int = 1,
    allowed_updates: list[str] | None = ALL_UPDATES,
    stop_timeout: float = 10.0,
) -> Iterator[telebot.TeleBot]:
    """Run ``bot.polling`` against ``api`` in a thread for the duration of the block.

    Polls with ``non_stop=True`` (API errors are logged and retried after telebot's 0.25 s
    back-off) and asks for ``allowed_updates`` (every type by default). On exit it stops
    polling, wakes the pending long poll (so stopping takes no ``long_polling_timeout``), joins
    the polling thread, then stops the worker threads of a threaded bot as ``stop_bot()``
    does: a handler still running is waited for, queued updates not yet started are dropped,
    as in telebot. Finally it confirms the updates the bot took, as its next ``getUpdates``
    would have, so a new bot on the same ``api`` does not see them again.

    A stopped TeleBot cannot poll again: build a new one to restart. On exit, raises
    RuntimeError when polling crashed (say, ``getMe`` failed) or a thread was still running
    after ``stop_timeout`` seconds (a handler stuck on a lock, say); when the block itself
    raised, these are added to its exception as notes instead, so a failing test still ends.
    """
    if inspect.iscoroutinefunction(bot.polling):
        raise TypeError(f"serve_bot() runs a TeleBot, not {type(bot).__name__}: use serve_async_bot()")
    crashed: list[BaseException] = []

    def poll() -> None:
        try:
            bot.polling(
                non_stop=True, interval=0, timeout=long_polling_timeout + 10,
                long_polling_timeout=long_polling_timeout, allowed_updates=allowed_updates,
                logger_level=logging.ERROR,
            )
        except BaseException as e:  # reported to the test's thread on exit
            crashed.append(e)

    untyped: Any = bot  # for telebot's methods, which carry no annotations

    def stop() -> list[str]:
        """Stop everything within stop_timeout; returns what would not stop."""
        api.release_polls(bot.token)
        deadline = time.monotonic() + stop_timeout
        # polling() clears the stop flag when it starts: a stop that came first would be lost,
        # so set it again until the thread is gone.
        while thread.is_alive() and time.monotonic() < deadline:
            untyped.stop_polling()
            thread.join(0.05)
        stuck = [thread.name] if thread.is_alive() else []
        if bot.threaded:
            stuck += _stop_workers(untyped, deadline)
        api.confirm(untyped.last_update_id + 1)
        if not thread.is_alive():
            api.hold_polls(bot.token)  # nobody polls with it now: leave the api as it was
        if crashed:
            return [f"polling crashed: {crashed[0]!r}"] + stuck
        return [f"{name} still running after {stop_timeout}s" for name in stuck]

    with patched_api_url(api):
        api.hold_polls(bot.token)
        thread = threading.Thread(target=poll, name=f"polling:{bot.token.split(':')[0]}", daemon=True)
        thread.start()
        try:
            yield bot
        except BaseException as e:
            for problem in stop():  # likely why the block failed: say so next to its error
                e.add_note(f"serve_bot: {problem}")
            raise
        problems = stop()
        if problems:
            raise RuntimeError("serve_bot: " + "; ".join(problems)) from (crashed[0] if crashed else None)


def _stop_workers(bot: Any, deadline: float) -> list[str]:
    """Stop a threaded bot's workers as ``stop_bot()`` does, but never wait past ``deadline``.

    Returns the names of workers still running then (their handler never returned).
    """
    bot.stop_polling()
    pool = bot.worker_pool
    # Workers sit in queue.get(timeout=0.5): flag them, then hand each an empty task so it
    # wakes, sees the flag and exits now rather than half a second later.
    for worker in pool.workers:
        worker.stop()
    for _ in pool.workers:
        pool.put(lambda: None)
    for worker in pool.workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    return [worker.name for worker in pool.workers if worker.is_alive()]
