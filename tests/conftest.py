"""Shared fixtures: storages of every kind, bots, and real updates."""

from __future__ import annotations

import itertools
import os
import logging
import multiprocessing
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import telebot
from telebot.types import Update

from telesession import FileStorage, MemoryStorage, SessionStorage
from telesession.storage.sqlite import SQLiteStorage

from .redis_server import make_redis_storage


def _redis(tmp: Path) -> SessionStorage:
    # One shared server (started on first use); each storage gets a prefix of its own, derived
    # from tmp so that the processes of one test agree on it. Skips, or fails under CI,
    # without redis-server.
    return make_redis_storage(prefix=f"t:{tmp.name}:")


# Each kind makes a fresh, empty storage in a test's tmp_path; called again with the same
# tmp_path (in another process too), it opens the same sessions.
STORAGE_KINDS: dict[str, Callable[[Path], SessionStorage]] = {
    "memory": lambda tmp: MemoryStorage(),
    "file": lambda tmp: FileStorage(tmp / "sessions"),
    "sqlite": lambda tmp: SQLiteStorage(tmp / "sessions.db"),
    "redis": _redis,
}
PERSISTENT_KINDS = [kind for kind in STORAGE_KINDS if kind != "memory"]


@pytest.fixture(params=list(STORAGE_KINDS))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStorage]:
    store = STORAGE_KINDS[request.param](tmp_path)
    yield store
    store.close()


@pytest.fixture(params=PERSISTENT_KINDS)
def persistent_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_bot(threaded: bool = False, num_threads: int = 4) -> telebot.TeleBot:
    """A real TeleBot that never talks to the network (no handler here sends anything)."""
    return telebot.TeleBot("123:TEST", threaded=threaded, num_threads=num_threads, use_class_middlewares=True)


_ids = itertools.count(1)
_id_lock = threading.Lock()


def _next_id() -> int:
    with _id_lock:
        return next(_ids)


def user(uid: int = 42) -> dict[str, Any]:
    return {"id": uid, "is_bot": False, "first_name": f"user{uid}"}


def chat(cid: int = 42, kind: str = "private") -> dict[str, Any]:
    return {"id": cid, "type": kind, **({"title": f"chat{cid}"} if kind != "private" else {"first_name": "u"})}


def message(text: str = "hi", chat_id: int = 42, user_id: int | None = 42, kind: str = "private", **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"message_id": _next_id(), "date": 1764000000, "chat": chat(chat_id, kind), "text": text, **extra}
    if user_id is not None:
        data["from"] = user(user_id)
    if text.startswith("/"):
        data["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return data


def update(**fields: Any) -> Update:
    """A real telebot Update built by ``Update.de_json`` from Bot API fields."""
    return Update.de_json({"update_id": _next_id(), **fields})


def text_update(text: str = "hi", chat_id: int = 42, user_id: int | None = 42, kind: str = "private", **extra: Any) -> Update:
    return update(message=message(text, chat_id, user_id, kind, **extra))


class Counter:
    """Counts finished updates so a test can wait for a threaded bot without sleeping."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.value = 0

    def add(self) -> None:
        with self._cond:
            self.value += 1
            self._cond.notify_all()

    def wait(self, n: int, timeout: float = 30.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.value >= n, timeout):
                raise AssertionError(f"waited {timeout}s for {n} updates, {self.value} finished")


def stored(storage: SessionStorage, key: str | int) -> Any:
    """The session data stored under ``key`` (a chat id stands for the default key), or None."""
    record = storage.get(str(key))
    return None if record is None else record["data"]


@pytest.fixture
def log_errors(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="telesession")
    return caplog


def _held_elsewhere(kind: str, directory: str, key: str, result: Any) -> None:
    storage = STORAGE_KINDS[kind](Path(directory))
    lease = storage.acquire(key, blocking=False)
    result.put(lease is None)
    if lease is not None:
        lease.release()
    storage.close()


def held_elsewhere(kind: str, tmp_path: Path, key: str) -> bool:
    """Whether another (spawned) process finds ``key`` held in the ``kind`` storage at ``tmp_path`` right now."""
    ctx = multiprocessing.get_context("spawn")
    result = ctx.Queue()
    process = ctx.Process(target=_held_elsewhere, args=(kind, str(tmp_path), key, result))
    process.start()
    try:
        return bool(result.get(timeout=60))
    finally:
        process.join(60)


def run_processes(target: Callable[..., object], args: list[tuple[Any, ...]], timeout: float = 120) -> None:
    """Run ``target`` in one fresh (spawned) process per ``args`` entry, all at once; each must exit 0."""
    workers = [multiprocessing.get_context("spawn").Process(target=target, args=a) for a in args]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout)
        assert worker.exitcode == 0
