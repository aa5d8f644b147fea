"""MemoryStorage's own promises: no threads for async code, renames that move bytes, memory the size of the JSON."""

from __future__ import annotations

import asyncio
import gc
import threading
import tracemalloc

import orjson

from telesession import MemoryStorage


def test_async_twins_run_inline() -> None:
    """With no I/O to wait for, the a-verbs and leases run on the event loop's thread, not in a worker thread."""
    storage = MemoryStorage()
    seen: list[int] = []
    get = storage.get

    def spying_get(key: str) -> object:
        seen.append(threading.get_ident())
        return get(key)

    storage.get = spying_get  # type: ignore[method-assign]

    async def main() -> None:
        await storage.aset("k", {"n": 1})
        assert await storage.aget("k") == {"n": 1}
        lease = await storage.aacquire("k")
        assert lease is not None and lease.value == {"n": 1}
        await lease.save({"n": 2})

    asyncio.run(main())
    assert seen == [threading.get_ident()] * 2 and storage.get("k") == {"n": 2}


def test_rename_moves_the_stored_bytes() -> None:
    """rename moves the stored JSON as it is (no decode, no encode) and replaces what the new key held."""
    storage = MemoryStorage()
    storage.set("old", {"n": 1})
    storage.set("new", {"n": 0})
    raw = storage._records["old"]
    assert storage.rename("old", "new")
    assert storage._records["new"] is raw and not storage.has("old")
    assert not storage.rename("old", "other") and not storage.has("other")


def test_a_stored_session_takes_about_its_json_size() -> None:
    """Memory held per session is its JSON's length plus small overheads, not orjson's 4 KiB working buffer."""
    value = {"data": {"items": [{"sku": f"SKU-{i:04d}", "title": f"Item number {i}", "price": 9.99 + i, "qty": i + 1} for i in range(5)]}}
    size = len(orjson.dumps(value))
    storage = MemoryStorage()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1000):
            storage.set(str(i), value)
        gc.collect()
        per_session = (tracemalloc.get_traced_memory()[0] - before) / 1000
    finally:
        tracemalloc.stop()
    # The bytes object's header (33), the key string (~50) and the dict's slot (~40) on top.
    assert per_session < size + 200, (per_session, size)


def test_repr_counts_sessions() -> None:
    """repr says how many sessions are held, never the object address."""
    storage = MemoryStorage()
    storage.set("a", {})
    assert repr(storage) == "MemoryStorage(<1 sessions>)"
