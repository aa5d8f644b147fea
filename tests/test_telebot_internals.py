"""The private telebot names telesession relies on (see telesession/_dispatch.py): each pinned, so a
telebot release that changes one fails here, loudly, instead of leaking locks or losing updates."""

from __future__ import annotations

import dis
import inspect

import telebot
from telebot import TeleBot, util

from telesession import _dispatch


def test_the_dispatch_call_has_the_parameters_a_replay_passes() -> None:
    """TeleBot._run_middlewares_and_handler(message, handlers, middlewares, update_type): replays call it so."""
    parameters = list(inspect.signature(TeleBot._run_middlewares_and_handler).parameters)
    assert parameters == ["self", "message", "handlers", "middlewares", "update_type"], parameters
    assert _dispatch.DISPATCH_CODE is TeleBot._run_middlewares_and_handler.__code__


def test_the_dispatch_call_keeps_the_locals_parking_reads() -> None:
    """Parking reads its locals data (what earlier middlewares put there) and skip_handlers (a SkipHandler seen)."""
    local_names = TeleBot._run_middlewares_and_handler.__code__.co_varnames
    assert {"self", "handlers", "middlewares", "update_type", "data", "skip_handlers"} <= set(local_names)


def test_the_dispatch_call_runs_pre_process_then_post_process_with_one_data_dict() -> None:
    """The shape the hold's lifetime stands on: pre_process and post_process are called from this one frame."""
    calls = {i.argval for i in dis.get_instructions(TeleBot._run_middlewares_and_handler) if i.opname.startswith("LOAD_")}
    assert {"pre_process", "post_process", "CancelUpdate", "SkipHandler"} <= calls


def test_exec_task_hands_tasks_to_the_worker_pool() -> None:
    """TeleBot._exec_task(task, *args) queues task on a threaded bot's pool (a replay goes there)."""
    assert list(inspect.signature(TeleBot._exec_task).parameters)[:2] == ["self", "task"]
    bot = telebot.TeleBot("123:TEST", threaded=True, num_threads=1, use_class_middlewares=True)
    try:
        ran = util.threading.Event()
        bot._exec_task(ran.set)
        assert ran.wait(5)
    finally:
        bot.stop_bot()


def test_the_worker_pool_lists_its_threads() -> None:
    """TeleBot.worker_pool.workers are threads: a replay queued after they all stopped is dropped."""
    bot = telebot.TeleBot("123:TEST", threaded=True, num_threads=2, use_class_middlewares=True)
    workers = bot.worker_pool.workers
    assert len(workers) == 2 and all(w.is_alive() for w in workers)
    assert _dispatch._pool_alive(bot)
    bot.stop_bot()
    assert not any(w.is_alive() for w in workers) and not _dispatch._pool_alive(bot)
