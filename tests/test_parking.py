"""A busy chat never stalls the others: an update waiting for its key gives its worker back and runs later, once."""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import telebot
from telebot.handler_backends import BaseMiddleware, CancelUpdate, SkipHandler

from telesession import SessionMiddleware, SessionStorage
from telesession._locks import table_for

from .conftest import STORAGE_KINDS, Counter, make_bot, stored, text_update
from .test_concurrency import Done


class Gate:
    """A handler that blocks its chat until released, and knows when it started."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def block(self) -> None:
        self.started.set()
        assert self.release.wait(30), "the gate was never released"


def gated_bot(storage: SessionStorage, gate: Gate, done: Counter, num_threads: int = 2) -> tuple[telebot.TeleBot, SessionMiddleware[Any]]:
    """A bot whose chat's updates append their text to the chat's session; text "block" blocks on the gate."""
    bot = make_bot(threaded=True, num_threads=num_threads)
    sessions = SessionMiddleware(initial=lambda: {"seen": []}, storage=storage)
    bot.setup_middleware(sessions)
    bot.setup_middleware(Done(done))

    @bot.message_handler(func=lambda m: True)
    def handle(message: Any) -> None:
        if message.text == "block":
            gate.block()
        message.session["seen"].append(message.text)

    return bot, sessions


def waiting(sessions: SessionMiddleware[Any], key: str) -> int:
    return sessions.engine.locks.waiting(sessions.engine.prefix + key)


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    """Wait for a state this test can't be told about (a parked update): bounded polling of a condition, no fixed sleeps."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.001)


def test_a_blocked_chat_stalls_nobody_else(storage: SessionStorage) -> None:
    """2 workers, one chat's handler blocked with 10 more updates of it waiting: 200 updates of other chats still finish."""
    gate, done = Gate(), Counter()
    bot, sessions = gated_bot(storage, gate, done, num_threads=2)
    bot.process_new_updates([text_update("block", chat_id=1)])
    assert gate.started.wait(10)
    bot.process_new_updates([text_update(f"a{i}", chat_id=1) for i in range(10)])
    bot.process_new_updates([text_update("x", chat_id=c) for c in range(2, 202)])
    done.wait(200)  # the blocked worker's twin did all of these: nothing else was free
    assert storage.get("1") is None and waiting(sessions, "1") == 10
    gate.release.set()
    done.wait(211)
    bot.stop_bot()
    assert stored(storage, 1) == {"seen": ["block"] + [f"a{i}" for i in range(10)]}
    assert all(stored(storage, c) == {"seen": ["x"]} for c in range(2, 202))
    assert len(table_for(storage.identity())) == 0


def test_parked_updates_of_a_key_run_in_the_order_they_came(storage: SessionStorage) -> None:
    """Updates parked behind a held key, one after another, run in that order (no race for the freed key)."""
    gate, done = Gate(), Counter()
    bot, sessions = gated_bot(storage, gate, done, num_threads=4)
    noise = threading.Thread(target=lambda: [bot.process_new_updates([text_update("x", chat_id=c)]) for c in range(2, 302)])
    bot.process_new_updates([text_update("block", chat_id=1)])
    assert gate.started.wait(10)
    noise.start()  # other chats' traffic through the same workers all along
    for i in range(40):
        bot.process_new_updates([text_update(f"u{i}", chat_id=1)])
        wait_until(lambda: waiting(sessions, "1") == i + 1)
    gate.release.set()
    noise.join(30)
    done.wait(341)
    bot.stop_bot()
    assert stored(storage, 1)["seen"] == ["block"] + [f"u{i}" for i in range(40)]


def test_under_load_every_update_runs_once_and_one_per_key_at_a_time(storage: SessionStorage) -> None:
    """4 workers, 8 chats x 60 updates with handlers of random length: each runs exactly once, never two of one chat at once."""
    done = Counter()
    bot = make_bot(threaded=True, num_threads=4)
    bot.setup_middleware(SessionMiddleware(initial=lambda: {"n": 0}, storage=storage))
    bot.setup_middleware(Done(done))
    inside: collections.Counter[int] = collections.Counter()
    runs: collections.Counter[int] = collections.Counter()
    overlaps: list[int] = []
    guard = threading.Lock()
    rng = random.Random(7)
    pauses = {}

    @bot.message_handler(func=lambda m: True)
    def handle(message: Any) -> None:
        with guard:
            inside[message.chat.id] += 1
            runs[message.message_id] += 1
            if inside[message.chat.id] > 1:
                overlaps.append(message.chat.id)
        time.sleep(pauses[message.message_id])
        message.session["n"] += 1
        with guard:
            inside[message.chat.id] -= 1

    batch = [text_update("x", chat_id=c) for _ in range(60) for c in range(8)]
    for u in batch:
        pauses[u.message.message_id] = rng.choice([0, 0, 0, 0.0005, 0.002])
    for i in range(0, len(batch), 40):
        bot.process_new_updates(batch[i : i + 40])
    done.wait(len(batch), timeout=120)
    bot.stop_bot()
    assert overlaps == [] and set(runs.values()) == {1} and len(runs) == len(batch)
    assert [stored(storage, c) for c in range(8)] == [{"n": 60}] * 8


def test_parked_updates_are_dropped_when_the_bot_stops(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """stop_bot() with updates parked: like the updates in telebot's queue, each either still runs (a stopping worker
    took it) or is dropped with a warning naming its key; none runs twice, no lock stays."""
    caplog.set_level(logging.WARNING, logger="telesession")
    storage = STORAGE_KINDS["file"](tmp_path)
    gate, done = Gate(), Counter()
    bot, sessions = gated_bot(storage, gate, done, num_threads=2)
    bot.process_new_updates([text_update("block", chat_id=1)])
    assert gate.started.wait(10)
    bot.process_new_updates([text_update(f"late{i}", chat_id=1) for i in range(3)])
    wait_until(lambda: waiting(sessions, "1") == 3)
    stopper = threading.Thread(target=bot.stop_bot)  # waits for the running handler, as telebot does
    stopper.start()
    time.sleep(0.1)
    gate.release.set()
    stopper.join(10)
    wait_until(lambda: len(table_for(storage.identity())) == 0)
    seen = stored(storage, 1)["seen"]
    dropped = caplog.text.count("the bot stopped before a parked message of session '1' could run")
    assert seen == ["block"] + [f"late{i}" for i in range(3 - dropped)] and dropped >= 2  # ran in order, or dropped
    storage.close()


def test_stop_polling_alone_lets_parked_updates_run(storage: SessionStorage) -> None:
    """stop_polling() stops fetching, not the workers: parked updates still run once their key is free."""
    gate, done = Gate(), Counter()
    bot, sessions = gated_bot(storage, gate, done, num_threads=2)
    bot.process_new_updates([text_update("block", chat_id=1)])
    assert gate.started.wait(10)
    bot.process_new_updates([text_update(f"n{i}", chat_id=1) for i in range(3)])
    wait_until(lambda: waiting(sessions, "1") == 3)
    bot.stop_polling()
    gate.release.set()
    done.wait(4)
    bot.stop_bot()
    assert stored(storage, 1) == {"seen": ["block", "n0", "n1", "n2"]}


class Before(BaseMiddleware):
    """A middleware registered before the session one: counts its calls, puts a value in data, may skip handlers."""

    update_types = ["message"]

    def __init__(self) -> None:
        self.pre: collections.Counter[str] = collections.Counter()
        self.post: collections.Counter[str] = collections.Counter()

    def pre_process(self, message: Any, data: dict[str, Any]) -> SkipHandler | None:
        self.pre[message.text] += 1
        data["greeting"] = f"hello {message.text}"
        return SkipHandler() if message.text.startswith("skip") else None

    def post_process(self, message: Any, data: dict[str, Any], exception: Any) -> None:
        self.post[message.text] += 1


def test_earlier_middlewares_see_one_pre_and_one_post_process_per_parked_update(storage: SessionStorage) -> None:
    """A parked update's replay restores what earlier middlewares put in data (and their SkipHandler), running each once."""
    gate, done = Gate(), Counter()
    before = Before()
    bot = make_bot(threaded=True, num_threads=2)
    bot.setup_middleware(before)
    sessions = SessionMiddleware(initial=lambda: {"seen": []}, storage=storage)
    bot.setup_middleware(sessions)
    bot.setup_middleware(Done(done))

    @bot.message_handler(func=lambda m: True)
    def handle(message: Any, greeting: str) -> None:
        if message.text == "block":
            gate.block()
        message.session["seen"].append(greeting)

    bot.process_new_updates([text_update("block", chat_id=1)])
    assert gate.started.wait(10)
    bot.process_new_updates([text_update("p1", chat_id=1), text_update("skip-me", chat_id=1), text_update("p2", chat_id=1)])
    wait_until(lambda: waiting(sessions, "1") == 3)
    gate.release.set()
    done.wait(4)
    bot.stop_bot()
    assert stored(storage, 1) == {"seen": ["hello block", "hello p1", "hello p2"]}  # skip-me's handler skipped
    assert before.pre == before.post == {"block": 1, "p1": 1, "skip-me": 1, "p2": 1}


class CancelOnReplay(BaseMiddleware):
    """Registered after the session middleware: cancels updates whose text starts with 'cancel'."""

    update_types = ["message"]

    def pre_process(self, message: Any, data: dict[str, Any]) -> CancelUpdate | None:
        return CancelUpdate() if message.text.startswith("cancel") else None

    def post_process(self, message: Any, data: dict[str, Any], exception: Any) -> None:
        pass


def test_a_replayed_update_that_is_cancelled_or_raises_releases_its_key(storage: SessionStorage) -> None:
    """Replays end like any update: cancelled by a later middleware or a raising handler, the key goes on at once."""
    logging.getLogger("TeleBot").setLevel(logging.CRITICAL)
    gate, done = Gate(), Counter()
    bot = make_bot(threaded=True, num_threads=2)
    sessions = SessionMiddleware(initial=lambda: {"seen": []}, storage=storage)
    bot.setup_middleware(sessions)
    bot.setup_middleware(CancelOnReplay())
    bot.setup_middleware(Done(done))

    @bot.message_handler(func=lambda m: True)
    def handle(message: Any) -> None:
        if message.text == "block":
            gate.block()
        message.session["seen"].append(message.text)
        if message.text == "boom":
            raise RuntimeError("the handler failed")

    bot.process_new_updates([text_update("block", chat_id=1)])
    assert gate.started.wait(10)
    bot.process_new_updates([text_update(t, chat_id=1) for t in ("cancel-1", "boom", "after")])
    wait_until(lambda: waiting(sessions, "1") == 3)
    gate.release.set()
    done.wait(3)  # block, boom, after (cancel-1 never reaches post_process)
    bot.stop_bot()
    assert stored(storage, 1) == {"seen": ["block", "after"]}
    assert len(table_for(storage.identity())) == 0


def test_a_bot_without_worker_threads_parks_too(storage: SessionStorage) -> None:
    """threaded=False (webhook server threads run updates): a thread whose key is busy returns at once; the update runs later."""
    gate, done = Gate(), Counter()
    bot = make_bot(threaded=False)
    sessions = SessionMiddleware(initial=lambda: {"seen": []}, storage=storage)
    bot.setup_middleware(sessions)
    bot.setup_middleware(Done(done))

    @bot.message_handler(func=lambda m: True)
    def handle(message: Any) -> None:
        if message.text == "block":
            gate.block()
        message.session["seen"].append(message.text)

    first = threading.Thread(target=bot.process_new_updates, args=([text_update("block", chat_id=1)],))
    first.start()
    assert gate.started.wait(10)
    started = time.monotonic()
    bot.process_new_updates([text_update("second", chat_id=1), text_update("other", chat_id=2)])
    assert time.monotonic() - started < 1.0  # it did not wait for chat 1's key
    assert stored(storage, 2) == {"seen": ["other"]} and done.value == 1
    gate.release.set()
    first.join(10)
    done.wait(3)
    assert stored(storage, 1) == {"seen": ["block", "second"]}


def _hold_key(kind: str, directory: str, key: str, held: Any, release: Any) -> None:
    storage = STORAGE_KINDS[kind](Path(directory))
    lease = storage.acquire(key)
    assert lease is not None
    held.set()
    release.wait(60)
    lease.release()
    storage.close()


def test_a_key_held_by_another_process_does_not_hold_a_worker(persistent_kind: str, tmp_path: Path) -> None:
    """With one worker, an update whose key another process holds waits on a thread of ours: other chats go on."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_key, args=(persistent_kind, str(tmp_path), "1", held, release))
    holder.start()
    assert held.wait(60)
    storage = STORAGE_KINDS[persistent_kind](tmp_path)
    done = Counter()
    bot = make_bot(threaded=True, num_threads=1)
    bot.setup_middleware(SessionMiddleware(initial=lambda: {"n": 0}, storage=storage))
    bot.setup_middleware(Done(done))
    bot.message_handler(func=lambda m: True)(lambda m: m.session.update(n=m.session["n"] + 1))
    bot.process_new_updates([text_update("x", chat_id=1)] + [text_update("x", chat_id=c) for c in range(2, 22)])
    done.wait(20)  # the one worker served every other chat while chat 1 waited elsewhere
    assert storage.get("1") is None
    release.set()
    done.wait(21)
    holder.join(30)
    bot.stop_bot()
    assert stored(storage, 1) == {"n": 1}
    storage.close()
