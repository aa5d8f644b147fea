"""RedisStorage against a real redis-server: locks, leases, TTL, key namespaces, outages."""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from .conftest import run_processes, stored
from .redis_server import RedisServer, free_port, make_redis_storage, redis_server  # noqa: F401

from telesession.errors import CorruptRecordError, StorageError

if not os.environ.get("CI"):  # under CI a missing redis-py fails the run instead
    pytest.importorskip("redis", reason="redis-py not installed (pip install 'telesession[redis]')")
import redis  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

from telesession.storage.redis import RedisStorage  # noqa: E402


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[RedisStorage]:  # noqa: F811
    storage = make_redis_storage()
    yield storage
    storage.close()


class Contender:
    """Tries ``storage.lock(key)`` in a thread and holds it until ``let_go()``."""

    def __init__(self, storage: RedisStorage, key: str):
        self.entered, self._release = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._hold, args=(storage, key), daemon=True)
        self._thread.start()

    def _hold(self, storage: RedisStorage, key: str) -> None:
        with storage.lock(key):
            self.entered.set()
            self._release.wait(30)

    def let_go(self) -> None:
        self._release.set()
        self._thread.join(10)
        assert not self._thread.is_alive()


def test_round_trip_of_odd_keys(store: RedisStorage) -> None:
    """Keys with NUL, emoji, path pieces, glob characters and lone surrogates are distinct and listable."""
    keys = ["", "\x00", "a\x00b", "🙂", "../x", "k" * 400, "*", "[a]", "\\", "\ud800", "lock:x", "data:x"]
    for i, key in enumerate(keys):
        store.set(key, {"i": i})
    assert [store.get(key) for key in keys] == [{"i": i} for i in range(len(keys))]
    assert sorted(store.keys()) == sorted(keys)


def test_session_keys_never_meet_lock_keys(store: RedisStorage) -> None:
    """A session named "lock:x" is not the lock of "x", and keys()/clear() never touch locks."""
    with store.lock("x"):
        store.set("lock:x", {"v": 1})
        assert list(store.keys()) == ["lock:x"]
        store.clear()
        assert store.client.exists(store._lock + b"x")
    store.set("lock:x", {"v": 2})
    assert store.get("lock:x") == {"v": 2}


def test_corrupt_record_is_reported_and_left_alone(store: RedisStorage) -> None:
    """Non-JSON bytes and a non-string key raise CorruptRecordError naming key and server; nothing changes."""
    store.client.set(store._data + b"bad", b"{not json")
    with pytest.raises(CorruptRecordError, match="'bad'") as info:
        store.get("bad")
    assert info.value.key == "bad" and info.value.location == store.location
    assert store.client.get(store._data + b"bad") == b"{not json"
    store.client.rpush(store._data + b"list", b"x")
    with pytest.raises(CorruptRecordError, match="'list'"):
        store.get("list")
    assert store.has("bad") and store.has("list")


def test_clear_leaves_foreign_keys_alone(redis_server: RedisServer) -> None:  # noqa: F811
    """clear() removes only this prefix's sessions, even when the prefix holds glob characters."""
    client = redis.Redis.from_url(redis_server.url)
    mine = RedisStorage(client, prefix="p*[x]:")
    lookalike = RedisStorage(client, prefix="pA[x]:")
    longer = RedisStorage(client, prefix="p*[x]:more:")
    client.set(b"p*[x]:other", b"foreign")
    for storage in (mine, lookalike, longer):
        storage.set("k", {"v": 1})
    with mine.lock("k"):
        mine.clear()
        assert client.exists(mine._lock + b"k")
    assert mine.get("k") is None and list(mine.keys()) == []
    assert lookalike.get("k") == {"v": 1} and longer.get("k") == {"v": 1}
    assert client.get(b"p*[x]:other") == b"foreign"
    client.close()


def test_ttl_is_set_and_refreshed_on_every_write(redis_server: RedisServer) -> None:  # noqa: F811
    """A session expires ttl after its last save, not its first."""
    store = make_redis_storage(ttl=1.0)
    name = store._data + b"k"
    store.set("k", {"v": 1})
    assert 0 < store.client.pttl(name) <= 1000
    time.sleep(0.6)
    store.set("k", {"v": 2})
    assert store.client.pttl(name) > 700
    time.sleep(0.6)  # 1.2 s after the first save: alive only because the second one refreshed it
    assert store.get("k") == {"v": 2}
    time.sleep(0.6)
    assert store.get("k") is None
    store.close()


def test_another_holder_cannot_release(redis_server: RedisServer) -> None:  # noqa: F811
    """A holder whose lease ran out does not delete the lock its successor now holds."""
    client = redis.Redis.from_url(redis_server.url)
    prefix = f"own-{uuid.uuid4().hex}:"
    first = RedisStorage(client, prefix=prefix, lock_lease=0.2)
    second = RedisStorage(client, prefix=prefix, lock_lease=0.5)
    stale = first.lock("k")
    stale.__enter__()
    first.close()  # stops renewing: the lease runs out while "first" still thinks it holds
    successor = Contender(second, "k")
    assert successor.entered.wait(5)
    with pytest.raises(StorageError, match="expired before its release"):
        stale.__exit__(None, None, None)
    third = Contender(second, "k")
    assert not third.entered.wait(1.0)  # the successor's 0.5 s lease is renewed, and still its own
    successor.let_go()
    assert third.entered.wait(5)
    third.let_go()
    second.close()
    client.close()


def test_lease_is_renewed_while_handler_runs(redis_server: RedisServer) -> None:  # noqa: F811
    """A hold of 1.5 s on a 0.3 s lease keeps everybody else out, then lets them in."""
    holder = make_redis_storage(lock_lease=0.3)
    other = RedisStorage.from_url(redis_server.url, prefix=holder.prefix, lock_lease=0.3)
    got_in: list[float] = []

    def contend() -> None:
        with other.lock("slow"):
            got_in.append(time.monotonic())

    with holder.lock("slow"):
        thread = threading.Thread(target=contend)
        thread.start()
        time.sleep(1.5)
        releasing_at = time.monotonic()
    thread.join(5)
    assert got_in and got_in[0] >= releasing_at
    holder.close()
    other.close()


def test_lock_released_from_another_thread(store: RedisStorage) -> None:
    """__exit__ may run on another thread than __enter__ (telebot skips post_process)."""
    hold = store.lock("k")
    hold.__enter__()
    finisher = threading.Thread(target=hold.__exit__, args=(None, None, None))
    finisher.start()
    finisher.join(5)
    next_holder = Contender(store, "k")
    assert next_holder.entered.wait(2)
    next_holder.let_go()


def _hold_forever(url: str, prefix: str, ready: Any) -> None:
    storage = RedisStorage.from_url(url, prefix=prefix, lock_lease=1.0)
    hold = storage.lock("k")  # keep a reference: a collected hold would release itself
    hold.__enter__()
    ready.set()
    time.sleep(60)


def test_lock_of_killed_process_expires_after_its_lease(redis_server: RedisServer) -> None:  # noqa: F811
    """A holder killed with SIGKILL stops renewing; the next acquire gets in once the lease ends."""
    ctx = multiprocessing.get_context("spawn")
    prefix = f"kill-{uuid.uuid4().hex}:"
    ready = ctx.Event()
    child = ctx.Process(target=_hold_forever, args=(redis_server.url, prefix, ready))
    child.start()
    assert ready.wait(30)
    time.sleep(0.5)  # let the child's renewer run at least once
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join()
    store = RedisStorage.from_url(redis_server.url, prefix=prefix)
    assert store.client.exists(store._lock + b"k"), "the dead holder's lock should still be there"
    started = time.monotonic()
    with store.lock("k"):
        waited = time.monotonic() - started
    assert waited <= 1.0 + 0.5
    store.close()


def _increment(url: str, prefix: str, key: str, times: int) -> None:
    storage = RedisStorage.from_url(url, prefix=prefix, lock_lease=5.0)

    def work() -> None:
        for _ in range(times):
            with storage.lock(key):
                value = storage.get(key) or {"n": 0}
                value["n"] += 1
                storage.set(key, value)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    storage.close()


def test_processes_and_threads_lose_no_increment(redis_server: RedisServer) -> None:  # noqa: F811
    """4 processes x 2 threads x 50 locked read-modify-writes of one key: exactly 400."""
    prefix = f"inc-{uuid.uuid4().hex}:"
    run_processes(_increment, [(redis_server.url, prefix, "counter", 50)] * 4)
    store = RedisStorage.from_url(redis_server.url, prefix=prefix)
    assert store.get("counter") == {"n": 400}
    store.close()


def test_outage_raises_storage_error_and_restart_resumes(tmp_path: Path) -> None:
    """Redis stopped: StorageError naming key and URL; restarted on the same AOF: data back, work resumes."""
    server = RedisServer(tmp_path, "--save", "", "--appendonly", "yes", "--appendfsync", "always").start()
    # One quick retry instead of redis-py's default ten over ~3.5 s, to keep the test short.
    store = RedisStorage.from_url(server.url, retry=Retry(NoBackoff(), 1))
    try:
        store.set("before", {"v": 1})
        server.stop()
        calls = [
            lambda: store.get("before"),
            lambda: store.set("during", {"v": 2}),
            lambda: store.has("before"),
            lambda: store.delete("before"),
            lambda: store.lock("before").__enter__(),
        ]
        for call in calls:
            with pytest.raises(StorageError) as info:
                call()
            assert type(info.value) is StorageError
            assert "'before'" in str(info.value) or "'during'" in str(info.value)
            assert server.url in str(info.value) and info.value.location == server.url
            assert isinstance(info.value.original_error, redis.RedisError)
        with pytest.raises(StorageError, match="cannot list sessions"):
            list(store.keys())
        server.start()
        assert store.get("before") == {"v": 1}
        store.set("after", {"v": 3})
        with store.lock("after"):
            assert sorted(store.keys()) == ["after", "before"]
    finally:
        store.close()
        server.stop()


def test_error_message_hides_the_password() -> None:
    """The URL in errors never carries the password."""
    store = RedisStorage.from_url(f"redis://user:s3cret@127.0.0.1:{free_port()}/3", retry=Retry(NoBackoff(), 0))
    with pytest.raises(StorageError) as info:
        store.get("k")
    assert "s3cret" not in str(info.value) and "s3cret" not in repr(info.value.location)
    assert info.value.location == f"redis://user@127.0.0.1:{store.client.connection_pool.connection_kwargs['port']}/3"
    store.close()


def test_import_without_redis_py_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py, importing the module fails with the pip command to run."""
    monkeypatch.setitem(sys.modules, "redis", None)  # what an uninstalled package looks like
    monkeypatch.delitem(sys.modules, "telesession.storage.redis")
    with pytest.raises(ImportError, match=r"pip install 'telesession\[redis\]'"):
        importlib.import_module("telesession.storage.redis")


def test_bad_options_are_refused() -> None:
    """ttl and lock_lease must be positive."""
    client = redis.Redis()  # never connects: nothing is sent
    with pytest.raises(ValueError, match="ttl"):
        RedisStorage(client, ttl=0)
    with pytest.raises(ValueError, match="lock_lease"):
        RedisStorage(client, lock_lease=-1)
    client.close()


class _Records(logging.Handler):
    """Log records of telesession, with a wait for one that matches (workers log from their threads)."""

    def __init__(self) -> None:
        super().__init__()
        self.cond = threading.Condition()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self.cond:
            self.messages.append(record.getMessage())
            self.cond.notify_all()

    def wait_for(self, text: str, timeout: float = 30) -> str:
        with self.cond:
            assert self.cond.wait_for(lambda: any(text in m for m in self.messages), timeout), self.messages
            return next(m for m in self.messages if text in m)


def test_outage_under_a_polling_bot(tmp_path: Path) -> None:
    """Redis down mid-run: the update is logged with its key, polling lives, no lock stays, nothing is lost."""
    import telebot

    from telesession import SessionMiddleware
    from telesession.middleware import _tables
    from telesession.testing import FakeBotAPI, serve_bot

    server = RedisServer(tmp_path, "--save", "", "--appendonly", "yes", "--appendfsync", "always").start()
    store = RedisStorage.from_url(server.url, retry=Retry(NoBackoff(), 1))
    records = _Records()
    logging.getLogger("telesession").addHandler(records)
    bot = telebot.TeleBot("123:TEST", threaded=True, num_threads=4, use_class_middlewares=True)
    bot.setup_middleware(SessionMiddleware(initial=lambda: {"count": 0}, storage=store))

    @bot.message_handler(commands=["count"])
    def count(message: Any) -> None:
        message.session["count"] += 1
        bot.reply_to(message, f"Count: {message.session['count']}")

    try:
        with FakeBotAPI() as api, serve_bot(api, bot):
            alice = api.user(first_name="Alice")
            assert alice.ask("/count").text == "Count: 1"
            assert alice.ask("/count").text == "Count: 2"
            server.stop()
            alice.send("/count")
            logged = records.wait_for("the update was not handled")
            assert f"'{alice.chat_id}'" in logged and server.url in logged
            assert len(_tables[store]) == 0  # the in-process lock went with the failed update
            server.start()
            assert alice.ask("/count").text == "Count: 3"  # the outage update changed nothing
        # The bot has stopped: every save is done (a reply goes out before its session is saved).
        assert stored(store, alice.chat_id) == {"count": 3}
        assert list(store.client.scan_iter(match=store.prefix + "lock:*")) == []
    finally:
        logging.getLogger("telesession").removeHandler(records)
        store.close()
        server.stop()
