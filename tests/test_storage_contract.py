"""The SessionStorage contract, run against every storage kind."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from telesession import EncodeError, MemoryStorage, SessionStorage

from .conftest import STORAGE_KINDS, held_elsewhere

ODD_KEYS = ["../x", "/", "a/b", "..", ".", "\x00", "nul\x00in", "k" * 400, "🙂 emoji", "Case", "case", "%41", "~x", "", " "]


def test_get_missing_is_none(storage: SessionStorage) -> None:
    """A key never written reads as None and is not there."""
    assert storage.get("nope") is None
    assert not storage.has("nope")


def test_set_get_round_trip(storage: SessionStorage) -> None:
    """What is set comes back equal, with JSON types intact."""
    value = {"n": 1, "f": 1.5, "t": True, "none": None, "s": "ü", "l": [1, "a", {"x": []}], "d": {"k": {"k": 2}}}
    storage.set("k", value)
    assert storage.get("k") == value
    assert type(storage.get("k")["t"]) is bool
    assert storage.has("k")


def test_get_returns_a_copy(storage: SessionStorage) -> None:
    """Mutating a value read from the storage never changes what is stored."""
    storage.set("k", {"items": [1]})
    storage.get("k")["items"].append(2)
    assert storage.get("k") == {"items": [1]}


def test_set_replaces(storage: SessionStorage) -> None:
    """A second set replaces the first completely."""
    storage.set("k", {"a": 1, "b": 2})
    storage.set("k", {"c": 3})
    assert storage.get("k") == {"c": 3}


def test_delete(storage: SessionStorage) -> None:
    """Delete removes a key; deleting a missing key is fine."""
    storage.set("k", {"a": 1})
    storage.delete("k")
    assert storage.get("k") is None and not storage.has("k")
    storage.delete("k")


def test_clear_and_keys(storage: SessionStorage) -> None:
    """keys() lists what is stored; clear() empties the storage."""
    for key in ["a", "b", "user:1"]:
        storage.set(key, {"k": key})
    assert sorted(storage.keys()) == ["a", "b", "user:1"]
    storage.clear()
    assert list(storage.keys()) == []
    assert storage.get("a") is None


@pytest.mark.parametrize("key", ODD_KEYS, ids=repr)
def test_odd_keys_are_distinct(storage: SessionStorage, key: str) -> None:
    """Any key string stores and lists as itself, apart from every other key."""
    for other in ODD_KEYS:
        storage.set(other, {"key": other})
    assert storage.get(key) == {"key": key}
    assert sorted(storage.keys()) == sorted(ODD_KEYS)


def test_unserializable_value_is_refused(storage: SessionStorage) -> None:
    """A value JSON cannot hold raises EncodeError and leaves the stored value as it was."""
    storage.set("k", {"a": 1})
    with pytest.raises(EncodeError):
        storage.set("k", {"a": object()})
    assert storage.get("k") == {"a": 1}


def test_lock_is_per_key_and_can_be_released_by_another_thread(storage: SessionStorage) -> None:
    """lock(key) leaves other keys free, and a hold may be released by another thread."""
    held = storage.lock("k")
    held.__enter__()
    with storage.lock("other"):
        pass
    t = threading.Thread(target=held.__exit__, args=(None, None, None))
    t.start()
    t.join(5)
    with storage.lock("k"):  # free again
        storage.set("k", {"a": 1})
    assert storage.get("k") == {"a": 1}


# -- the hold the engine takes: acquire, Lease, rename, identity --------------------------------


def test_acquire_reads_under_the_hold_and_save_writes_and_releases(storage: SessionStorage) -> None:
    """A lease carries the stored value; save writes the new one and frees the key for the next lease."""
    storage.set("k", {"n": 1})
    lease = storage.acquire("k")
    assert lease is not None and lease.value == {"n": 1}
    lease.save({"n": 2})
    again = storage.acquire("k", blocking=False)
    assert again is not None and again.value == {"n": 2}
    again.release()
    again.release()  # idempotent
    assert storage.get("k") == {"n": 2}


def test_a_lease_on_a_missing_key_reads_none_and_delete_removes(storage: SessionStorage) -> None:
    """A key never written leases with value None; delete removes the record and releases."""
    lease = storage.acquire("fresh")
    assert lease is not None and lease.value is None
    lease.save({"a": 1})
    lease = storage.acquire("fresh")
    assert lease is not None
    lease.delete()
    assert storage.get("fresh") is None and not storage.has("fresh")
    lease = storage.acquire("fresh", blocking=False)
    assert lease is not None
    lease.release()


def test_a_lease_may_end_on_another_thread(storage: SessionStorage) -> None:
    """The thread that ends a lease need not be the one that took it."""
    lease = storage.acquire("k")
    assert lease is not None
    t = threading.Thread(target=lease.save, args=({"x": 1},))
    t.start()
    t.join(10)
    lease = storage.acquire("k", blocking=False)
    assert lease is not None and lease.value == {"x": 1}
    lease.release()


def test_a_failed_save_still_releases(storage: SessionStorage) -> None:
    """A value JSON can't hold is refused by save, the stored value stays, and the key is free again."""
    storage.set("k", {"a": 1})
    lease = storage.acquire("k")
    assert lease is not None
    with pytest.raises(EncodeError):
        lease.save({"a": object()})
    lease = storage.acquire("k", blocking=False)
    assert lease is not None and lease.value == {"a": 1}
    lease.release()


def test_a_lease_excludes_other_processes(persistent_kind: str, tmp_path: Path) -> None:
    """While one process holds a key, another's non-blocking acquire finds it held; other keys are free."""
    storage = STORAGE_KINDS[persistent_kind](tmp_path)
    try:
        lease = storage.acquire("k")
        assert lease is not None
        assert held_elsewhere(persistent_kind, tmp_path, "k")
        assert not held_elsewhere(persistent_kind, tmp_path, "other")
        lease.release()
        assert not held_elsewhere(persistent_kind, tmp_path, "k")
    finally:
        storage.close()


def test_lock_of_a_builtin_storage_excludes_other_processes(persistent_kind: str, tmp_path: Path) -> None:
    """lock(key), for code that only needs exclusion, holds the key as acquire does."""
    storage = STORAGE_KINDS[persistent_kind](tmp_path)
    try:
        with storage.lock("k"):
            assert held_elsewhere(persistent_kind, tmp_path, "k")
        assert not held_elsewhere(persistent_kind, tmp_path, "k")
    finally:
        storage.close()


def test_rename_moves_a_record(storage: SessionStorage) -> None:
    """rename moves a record to a new key (replacing what is there); renaming nothing says False."""
    storage.set("old", {"n": 1})
    storage.set("new", {"n": 0})
    assert storage.rename("old", "new")
    assert storage.get("new") == {"n": 1} and storage.get("old") is None and not storage.has("old")
    assert not storage.rename("old", "other")
    assert storage.get("other") is None


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_floats_are_refused(storage: SessionStorage, bad: float) -> None:
    """NaN and infinities are not JSON: refused with the path, never stored as null."""
    storage.set("k", {"a": 1})
    with pytest.raises(EncodeError) as info:
        storage.set("k", {"a": 1, "cart": {"price": [1.0, bad]}})
    assert info.value.path == "cart.price[1]"
    assert storage.get("k") == {"a": 1}


@pytest.mark.parametrize("key", ["\udc80", "a\ud800b", "\udfff:42"], ids=repr)
def test_every_str_is_a_key(storage: SessionStorage, key: str) -> None:
    """Keys with lone surrogates store, lease, list and delete like any other."""
    storage.set(key, {"k": 1})
    assert storage.get(key) == {"k": 1} and storage.has(key)
    assert list(storage.keys()) == [key]
    lease = storage.acquire(key)
    assert lease is not None
    lease.save({"k": 2})
    assert storage.get(key) == {"k": 2}
    storage.delete(key)
    assert storage.get(key) is None


def test_identity_names_the_store(persistent_kind: str, tmp_path: Path) -> None:
    """Two objects on one store share an identity (so they share in-process locks); other stores differ."""
    a, b = STORAGE_KINDS[persistent_kind](tmp_path), STORAGE_KINDS[persistent_kind](tmp_path)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    c = STORAGE_KINDS[persistent_kind](other_dir)
    try:
        assert a.identity() == b.identity() and hash(a.identity()) == hash(b.identity())
        assert a.identity() != c.identity()
    finally:
        for s in (a, b, c):
            s.close()


def test_memory_storages_are_separate_stores() -> None:
    """Two MemoryStorage objects never share sessions, so never share an identity."""
    assert MemoryStorage().identity() != MemoryStorage().identity()


def test_repr_says_where_the_storage_is(storage: SessionStorage, tmp_path: Path) -> None:
    """Every storage's repr names its location (a path, or host:port/db without password)."""
    text = repr(storage)
    assert "object at 0x" not in text
    if not isinstance(storage, MemoryStorage):
        assert str(tmp_path) in text or "127.0.0.1:" in text, text


def test_async_twins(storage: SessionStorage) -> None:
    """The a-prefixed verbs do what the plain ones do, for async code."""

    async def main() -> None:
        await storage.aset("k", {"n": 1})
        assert await storage.aget("k") == {"n": 1} and await storage.ahas("k")
        lease = await storage.aacquire("k")
        assert lease is not None and lease.value == {"n": 1}
        await lease.save({"n": 2})
        assert [key async for key in storage.akeys()] == ["k"]
        assert await storage.arename("k", "j")
        lease = await storage.aacquire("j", blocking=False)
        assert lease is not None and lease.value == {"n": 2}
        await lease.delete()
        assert await storage.aget("j") is None

    asyncio.run(main())
