"""The SessionStorage contract, run against every storage kind."""

from __future__ import annotations

import threading

import pytest

from telesession import EncodeError, SessionStorage

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
