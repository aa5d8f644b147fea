"""RedisStorage against a real redis-server: locks, leases, TTL, key namespaces, outages."""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
import os
import random
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
        assert store.client.exists(store._names("x")[1])
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
        assert client.exists(mine._names("k")[1])
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
    assert store.client.exists(store._names("k")[1]), "the dead holder's lock should still be there"
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
    from telesession._locks import table_for
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
            assert len(table_for(store.identity())) == 0  # the in-process lock went with the failed update
            server.start()
            assert alice.ask("/count").text == "Count: 3"  # the outage update changed nothing
        # The bot has stopped: every save is done (a reply goes out before its session is saved).
        assert stored(store, alice.chat_id) == {"count": 3}
        assert list(store.client.scan_iter(match=store.prefix + "lock:*")) == []
    finally:
        logging.getLogger("telesession").removeHandler(records)
        store.close()
        server.stop()


# -- fenced leases, round trips, key layout ------------------------------------------------------


def _stale_holder(url: str, prefix: str, ready: Any, go: Any, outcome: Any) -> None:
    storage = RedisStorage.from_url(url, prefix=prefix, lock_lease=1.0)
    lease = storage.acquire("k")
    assert lease is not None
    ready.set()
    go.wait(60)  # set once the test has let this process run again
    try:
        lease.save({"v": "stale"})
    except StorageError as e:
        outcome.put(("refused", e.key, str(e)))
    else:
        outcome.put(("saved", None, ""))
    storage.close()


def test_a_stalled_holder_cannot_write_over_its_successor(redis_server: RedisServer) -> None:  # noqa: F811
    """A holder stopped 3 s on a 1 s lease resumes: its save is refused naming the key, the newer value stays."""
    ctx = multiprocessing.get_context("spawn")
    prefix = f"stale-{uuid.uuid4().hex}:"
    ready, go, outcome = ctx.Event(), ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_stale_holder, args=(redis_server.url, prefix, ready, go, outcome))
    child.start()
    store = RedisStorage.from_url(redis_server.url, prefix=prefix, lock_lease=1.0)
    try:
        assert ready.wait(30)
        os.kill(child.pid, signal.SIGSTOP)  # type: ignore[arg-type]
        stopped_at = time.monotonic()
        try:
            lease = store.acquire("k")  # waits until the stopped holder's lease runs out
            assert lease is not None and time.monotonic() - stopped_at < 2.5
            lease.save({"v": "newer"})
            time.sleep(max(0.0, 3.0 - (time.monotonic() - stopped_at)))
        finally:
            os.kill(child.pid, signal.SIGCONT)  # type: ignore[arg-type]
        go.set()
        how, key, message = outcome.get(timeout=30)
        child.join(30)
        assert (how, key) == ("refused", "k") and "'k'" in message and redis_server.url in message
        assert store.get("k") == {"v": "newer"}
        again = store.acquire("k", blocking=False)  # and nobody holds the key now
        assert again is not None
        again.release()
    finally:
        if child.is_alive():
            child.kill()
        store.close()


def _counting_storage(url: str, sent: list[bytes]) -> RedisStorage:
    """A storage whose client records every packet redis-py writes to the server."""

    class Counting(redis.Connection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            sent.append(command)
            super().send_packed_command(command, check_health)

    storage = RedisStorage(redis.Redis.from_url(url, connection_class=Counting), prefix=f"rt-{uuid.uuid4().hex}:")
    storage._owns_client = True
    return storage


def test_a_cycle_takes_two_round_trips(redis_server: RedisServer) -> None:  # noqa: F811
    """acquire+save, acquire+release (unchanged) and acquire+delete each send two packets to Redis."""
    sent: list[bytes] = []
    store = _counting_storage(redis_server.url, sent)

    def changed() -> None:
        lease = store.acquire("k")
        assert lease is not None
        lease.save({"n": (lease.value or {"n": 0})["n"] + 1})

    def unchanged() -> None:
        lease = store.acquire("k")
        assert lease is not None
        lease.release()

    def deleted() -> None:
        lease = store.acquire("k")
        assert lease is not None
        lease.delete()

    for cycle in (changed, unchanged, deleted):
        cycle()  # connects and loads the scripts: sent once per server, not per cycle
    for cycle in (changed, unchanged, deleted):
        sent.clear()
        for _ in range(10):
            cycle()
        assert len(sent) == 20, (cycle.__name__, sent[:4])
    store.close()


def _tagged(name: bytes) -> bool:
    """Whether Redis Cluster hashes only part of ``name`` (the spec's rule, written out for the test)."""
    start = name.find(b"{")
    return start >= 0 and name.find(b"}", start + 1) > start + 1


_SLOT_PREFIXES = ["telesession:", "", "p*[x]:", "t:{bot}:", "a}b:", "{}x:", "{open:", "x{y"]
_SLOT_KEYS = ["", "42", "-1001234:42", "{u1}:x", "x:{u1}", "{}", "{}x}", "a}b", "}{", "{a", "a{b}c{d}", "{", "}", "{{}}",
              "lock:x", "data:x", "🙂", "\ud800", "{\ud800}", "{telesession:data:x}", "{telesession:data:x}x", "x"]  # fmt: skip


def _many_keys() -> list[str]:
    rng = random.Random(7)
    parts = ["{", "}", "a", ":", "lock:", "data:", "{a}", "\ud800", "telesession:data:"]
    return _SLOT_KEYS + ["".join(rng.choice(parts) for _ in range(rng.randrange(7))) for _ in range(3000)]


@pytest.mark.parametrize("prefix", _SLOT_PREFIXES)
def test_a_lock_shares_its_data_slot(prefix: str) -> None:
    """By redis-py's own key_slot, a lock shares its data's hash slot, except for the keys the docstring names."""
    from redis.crc import key_slot

    client = redis.Redis()  # never connects: nothing is sent
    store = RedisStorage(client, prefix=prefix)
    apart, keys = 0, _many_keys()
    for key in keys:
        data, lock = store._names(key)
        assert data == (prefix + "data:" + key).encode("utf-8", "surrogatepass")  # where earlier versions stored it
        raw = prefix.encode()
        documented = not _tagged(raw) if b"{" in raw else not _tagged(data) and b"}" in data
        if documented:
            apart += 1
            assert lock == (prefix + "lock:" + key).encode("utf-8", "surrogatepass")
        else:
            assert key_slot(lock) == key_slot(data), (prefix, key, lock)
    if prefix == "t:{bot}:":
        assert apart == 0  # the prefix's hash tag puts every name of the storage in one slot
    if prefix in ("{}x:", "{open:", "x{y"):
        assert apart == len(keys)  # a "{" without a tag in the prefix: no key can be co-located
    if prefix in ("telesession:", ""):
        assert store._names("a}b")[1] == (prefix + "lock:a}b").encode()  # one of the keys that can't be co-located
    client.close()


@pytest.mark.parametrize("prefix", _SLOT_PREFIXES)
def test_no_key_names_a_lock(prefix: str) -> None:
    """Lock names are one per key, and none is a data name (of any key) or lies under <prefix>data:."""
    client = redis.Redis()  # never connects: nothing is sent
    store = RedisStorage(client, prefix=prefix)
    keys = set(_many_keys())
    names = {key: store._names(key) for key in keys}
    locks = {lock for _, lock in names.values()}
    assert len(locks) == len(keys)
    assert not locks & {data for data, _ in names.values()}
    assert not any(lock.startswith(store._data) for lock in locks)
    client.close()


def test_keys_and_clear_never_see_held_locks(store: RedisStorage) -> None:
    """With leases held on keys with braces, "lock:" and the empty string, keys() lists only sessions, clear() keeps locks."""
    keys = ["", "lock:x", "x", "{u1}:x", "a}b", "}{", "data:x", "\ud800"]
    for i, key in enumerate(keys):
        store.set(key, {"i": i})
    leases = [store.acquire(key) for key in keys]
    assert sorted(store.keys()) == sorted(keys)
    store.clear()
    assert list(store.keys()) == []
    assert all(store.client.exists(store._names(key)[1]) for key in keys)
    for lease in leases:
        assert lease is not None
        lease.release()


def test_records_of_earlier_versions_stay_readable(store: RedisStorage) -> None:
    """A record at <prefix>data:<key>, where earlier versions wrote it, is read, leased and saved in place."""
    name = (store.prefix + "data:42").encode()
    store.client.set(name, b'{"n": 1}')
    assert store.get("42") == {"n": 1}
    lease = store.acquire("42")
    assert lease is not None and lease.value == {"n": 1}
    lease.save({"n": 2})
    assert store.client.get(name) == b'{"n":2}'


def test_a_lease_on_a_corrupt_record_keeps_the_lock_and_names_the_error(store: RedisStorage) -> None:
    """acquire on unreadable data hands it back as the lease's error, the lock held until the lease ends."""
    store.client.set(store._data + b"bad", b"{not json")
    store.client.rpush(store._data + b"list", b"x")
    for key in ("bad", "list"):
        lease = store.acquire(key, blocking=False)
        assert lease is not None and lease.value is None and isinstance(lease.error, CorruptRecordError)
        assert repr(key) in str(lease.error)
        assert store.acquire(key, blocking=False) is None  # held
        lease.release()
        again = store.acquire(key, blocking=False)
        assert again is not None
        again.release()
    assert store.client.get(store._data + b"bad") == b"{not json"


def test_save_sets_the_ttl_it_is_given(redis_server: RedisServer) -> None:  # noqa: F811
    """save(ttl=...) sets that expiry; without it the storage's ttl, or none."""
    for storage_ttl, save_ttl, expected in ((None, None, None), (None, 0.5, 500), (2.0, None, 2000), (2.0, 0.5, 500)):
        store = make_redis_storage(ttl=storage_ttl)
        lease = store.acquire("k")
        assert lease is not None
        lease.save({"v": 1}, ttl=save_ttl)
        pttl = store.client.pttl(store._data + b"k")
        assert (pttl == -1) if expected is None else (expected - 200 < pttl <= expected), (storage_ttl, save_ttl, pttl)
        store.close()


def test_rename_moves_bytes_and_ttl_and_leaves_locks(store: RedisStorage) -> None:
    """rename moves unreadable bytes as they are, with their TTL; the caller's leases on both keys stay its own."""
    old, new = store.acquire("old"), store.acquire("new")
    assert old is not None and new is not None
    store.client.set(store._data + b"old", b"{not json", px=60_000)
    assert store.rename("old", "new")
    assert not store.rename("old", "other")
    assert store.client.get(store._data + b"new") == b"{not json"
    assert 50_000 < store.client.pttl(store._data + b"new") <= 60_000
    assert not store.has("old")
    old.release()  # neither lock moved: no "expired before its release"
    new.release()


def test_identity_and_repr_name_server_db_and_prefix(redis_server: RedisServer) -> None:  # noqa: F811
    """Two storages on one server, db and prefix share an identity (whatever the user); the repr hides the password."""
    port = redis_server.port
    a = RedisStorage.from_url(f"redis://127.0.0.1:{port}/0", prefix="p:")
    b = RedisStorage(redis.Redis(host="127.0.0.1", port=port, db=0, username="u", password="s3cret"), prefix="p:")
    others = [
        RedisStorage.from_url(f"redis://127.0.0.1:{port}/1", prefix="p:"),
        RedisStorage.from_url(f"redis://127.0.0.1:{port}/0", prefix="q:"),
        RedisStorage.from_url(f"redis://127.0.0.1:{port + 1}/0", prefix="p:"),
    ]
    assert a.identity() == b.identity() and hash(a.identity()) == hash(b.identity())
    assert all(a.identity() != other.identity() for other in others)
    assert repr(a) == f"RedisStorage('redis://127.0.0.1:{port}/0', prefix='p:')"
    assert "s3cret" not in repr(b) and repr(b) == f"RedisStorage('redis://u@127.0.0.1:{port}/0', prefix='p:')"
    for storage in (a, b, *others):
        storage.close()
    b.client.close()


# -- async ----------------------------------------------------------------------------------------


def _sync_increments(url: str, prefix: str, keys: list[str], times: int, start: Any) -> None:
    storage = RedisStorage.from_url(url, prefix=prefix, lock_lease=5.0)
    start.wait(60)
    for _ in range(times):
        for key in keys:
            lease = storage.acquire(key)
            assert lease is not None
            lease.save({"n": (lease.value or {"n": 0})["n"] + 1})
    storage.close()


def test_async_tasks_and_processes_lose_no_increment(redis_server: RedisServer) -> None:  # noqa: F811
    """12 asyncio tasks and 2 processes (sync API) increment 3 keys at once: the totals are exact."""
    ctx = multiprocessing.get_context("spawn")
    prefix = f"ainc-{uuid.uuid4().hex}:"
    keys = ["a", "{u1}:b", "\ud800"]
    start = ctx.Barrier(3)
    workers = [ctx.Process(target=_sync_increments, args=(redis_server.url, prefix, keys, 50, start)) for _ in range(2)]
    for worker in workers:
        worker.start()
    store = RedisStorage.from_url(redis_server.url, prefix=prefix, lock_lease=5.0)

    async def main() -> None:
        # In-process exclusion is the engine's job; here an asyncio.Lock per key stands in for it.
        locks = {key: asyncio.Lock() for key in keys}

        async def bump(key: str, times: int) -> None:
            for _ in range(times):
                async with locks[key]:
                    lease = await store.aacquire(key)
                    assert lease is not None
                    await lease.save({"n": (lease.value or {"n": 0})["n"] + 1})

        await asyncio.to_thread(start.wait, 60)
        await asyncio.gather(*(bump(keys[i % 3], 25) for i in range(12)))
        await store.aclose()

    asyncio.run(main())
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    check = RedisStorage.from_url(redis_server.url, prefix=prefix)
    assert {key: check.get(key) for key in keys} == {key: {"n": 100 + 100} for key in keys}
    check.close()


def test_cancelled_aacquire_leaves_the_key_free(store: RedisStorage) -> None:
    """A task cancelled in aacquire, while it waits or after the server granted it the lock, leaves no lock behind."""
    lock = store._names("k")[1]

    async def main() -> None:
        await store.aget("k")  # connect first, so a try is sent in one step of the loop
        # 1. Waiting on a key another process holds.
        holder = store.acquire("k")
        assert holder is not None
        waiter = asyncio.create_task(store.aacquire("k"))
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        holder.release()
        assert not store.client.exists(lock)
        # 2. Cancelled after the server gave it the lock, before it read the reply.
        reached = 0
        for _ in range(20):
            task = asyncio.create_task(store.aacquire("k"))
            for _ in range(10):
                await asyncio.sleep(0)  # let the task send its try; the loop then stays here...
                if store.client.exists(lock):  # ...while the server grants it (a blocking call)
                    break
            if task.done():  # it read the reply first: not the case this test is after
                lease = task.result()
                assert lease is not None
                await lease.release()
                continue
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            reached += 1
            for _ in range(200):
                if not store.client.exists(lock):
                    break
                await asyncio.sleep(0.005)
            assert not store.client.exists(lock), "a cancelled aacquire left the lock taken"
        assert reached > 0
        await store.aclose()

    asyncio.run(main())


def test_a_cancelled_save_still_completes(store: RedisStorage) -> None:
    """A save whose task is cancelled while Redis holds it back (CLIENT PAUSE) still writes and releases."""

    async def main() -> None:
        lease = await store.aacquire("k")
        assert lease is not None
        store.client.execute_command("CLIENT", "PAUSE", 300, "WRITE")
        saving = asyncio.create_task(lease.save({"v": 1}))
        await asyncio.sleep(0.05)  # the script waits on the paused server
        saving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await saving
        for _ in range(200):
            if store.get("k") is not None:
                break
            await asyncio.sleep(0.01)
        assert store.get("k") == {"v": 1}
        await store.aclose()

    asyncio.run(main())
    again = store.acquire("k", blocking=False)
    assert again is not None
    again.release()


def test_async_leases_are_renewed(redis_server: RedisServer) -> None:  # noqa: F811
    """A lease taken with aacquire on a 0.3 s lease is held for 1.2 s, then saved and free."""
    store = make_redis_storage(lock_lease=0.3)
    other = RedisStorage.from_url(redis_server.url, prefix=store.prefix, lock_lease=0.3)

    async def main() -> None:
        lease = await store.aacquire("slow")
        assert lease is not None
        for _ in range(6):
            await asyncio.sleep(0.2)
            assert other.acquire("slow", blocking=False) is None
        await lease.save({"v": 1})
        await store.aclose()

    asyncio.run(main())
    free = other.acquire("slow", blocking=False)
    assert free is not None and free.value == {"v": 1}
    free.release()
    other.close()


def test_the_async_client_reaches_what_the_sync_one_does(redis_server: RedisServer) -> None:  # noqa: F811
    """A client made with host/port/db and a Retry, and one from a URL with a db: the async twins use that db."""
    port = redis_server.port
    given = redis.Redis(host="127.0.0.1", port=port, db=3, retry=Retry(NoBackoff(), 1))
    stores = [RedisStorage(given, prefix="mirror:"), RedisStorage.from_url(f"redis://127.0.0.1:{port}/4", prefix="mirror:")]

    async def main(storage: RedisStorage) -> None:
        await storage.aset("k", {"db": storage.identity()})
        lease = await storage.aacquire("k")
        assert lease is not None
        await lease.save({"db": "saved"})
        await storage.aclose()

    for db, storage in zip((3, 4), stores):
        asyncio.run(main(storage))
        direct = redis.Redis(host="127.0.0.1", port=port, db=db)
        assert direct.get(b"mirror:data:k") == b'{"db":"saved"}'
        direct.delete(b"mirror:data:k")
        direct.close()
    given.close()


def test_asyncio_run_closes_the_loops_client(store: RedisStorage) -> None:
    """After asyncio.run, even without aclose(), the loop's connections to Redis are closed."""
    before = len(store.client.client_list())

    async def main() -> None:
        await store.aset("k", {"v": 1})
        lease = await store.aacquire("k")
        assert lease is not None
        await lease.release()
        assert len(store.client.client_list()) > before

    asyncio.run(main())
    assert len(store.client.client_list()) == before
