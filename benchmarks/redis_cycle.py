"""What a session update costs RedisStorage, against a raw GET + SET pair on the same connection.

A session update is a lease: ``acquire`` (lock and read, one round trip) then ``save`` (fenced
write and release, one round trip) when the session changed, or ``release`` (one round trip)
when it did not. The floor is what any update must do at least, with no lock: GET then SET of
the same bytes, on the same client. Both run on a private redis-server (127.0.0.1, no
persistence), 50 keys round-robin, a 400-byte session. For scale, the sync table also shows
the 4 round trips an update took before leases (SET NX, GET, SET, compare-and-delete), written
with raw redis-py calls. The async rows do the same through ``aacquire`` and a
``redis.asyncio`` GET + SET, in one event loop.

Cases run interleaved (order rotated each round); a sample is the mean over 200 cycles (100
with ``--quick``); the table shows medians in microseconds and the median of per-round ratios
to the floor. The ratio shrinks as round trips get dearer (a slower host, a real network).

Standalone: ``python benchmarks/redis_cycle.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from _common import RedisServer, header, interleaved, median, ratio, table

import redis
import redis.asyncio
from telesession.storage.redis import RedisStorage

KEYS = [f"chat:{i}" for i in range(50)]
VALUE = {"items": [{"sku": f"SKU-{i:04d}", "title": f"Item number {i}", "price": 9.99 + i, "qty": i + 1} for i in range(5)],
         "tags": {f"tag{i}": f"value {i}" for i in range(5)}, "coupon": None, "visits": 0}  # fmt: skip


def per_cycle_us(cycle: Callable[[str], None], ops: int) -> Callable[[], float]:
    def sample() -> float:
        start = time.perf_counter()
        for i in range(ops):
            cycle(KEYS[i % len(KEYS)])
        return (time.perf_counter() - start) / ops * 1e6

    return sample


def sync_cases(store: RedisStorage, ops: int) -> dict[str, Callable[[], float]]:
    client, payload = store.client, orjson.dumps(VALUE)
    raw_names = {key: f"raw:{key}".encode() for key in KEYS}

    def raw(key: str) -> None:
        client.get(raw_names[key])
        client.set(raw_names[key], payload)

    release = client.register_script("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0")

    def four_trips(key: str) -> None:
        # What an update cost before leases: lock, read, write, release, one round trip each.
        lock = f"old-lock:{key}".encode()
        client.set(lock, b"token", nx=True, px=30_000)
        client.get(raw_names[key])
        client.set(raw_names[key], payload)
        release(keys=[lock], args=[b"token"])

    def changed(key: str) -> None:
        lease = store.acquire(key)
        assert lease is not None
        lease.save(VALUE)

    def unchanged(key: str) -> None:
        lease = store.acquire(key)
        assert lease is not None
        lease.release()

    return {
        "raw GET + SET": per_cycle_us(raw, ops),
        "acquire + save (changed)": per_cycle_us(changed, ops),
        "acquire + release (unchanged)": per_cycle_us(unchanged, ops),
        "4 round trips (lock, GET, SET, release)": per_cycle_us(four_trips, ops),
    }


def async_cases(
    store: RedisStorage, client: redis.asyncio.Redis, loop: asyncio.AbstractEventLoop, ops: int
) -> dict[str, Callable[[], float]]:
    payload = orjson.dumps(VALUE)
    raw_names = {key: f"araw:{key}".encode() for key in KEYS}

    async def raw(key: str) -> None:
        await client.get(raw_names[key])
        await client.set(raw_names[key], payload)

    async def changed(key: str) -> None:
        lease = await store.aacquire(key)
        assert lease is not None
        await lease.save(VALUE)

    async def unchanged(key: str) -> None:
        lease = await store.aacquire(key)
        assert lease is not None
        await lease.release()

    def timed(cycle: Callable[[str], object]) -> Callable[[], float]:
        async def run() -> float:
            start = time.perf_counter()
            for i in range(ops):
                await cycle(KEYS[i % len(KEYS)])  # type: ignore[misc]
            return (time.perf_counter() - start) / ops * 1e6

        return lambda: loop.run_until_complete(run())

    return {
        "async raw GET + SET": timed(raw),
        "aacquire + save (changed)": timed(changed),
        "aacquire + release (unchanged)": timed(unchanged),
    }


def report(title: str, samples: dict[str, list[float]]) -> None:
    names = list(samples)
    floor = samples[names[0]]
    rows = []
    for name in names:
        ratios = [s / f for s, f in zip(samples[name], floor)]
        rows.append([name, median(samples[name]), ratio(median(ratios))])
    table(["per update", "median us", "vs floor"], rows, title=title)


def main(quick: bool) -> None:
    rounds, ops = (10, 100) if quick else (40, 200)
    with tempfile.TemporaryDirectory(prefix="telesession-bench-") as tmp:
        server = RedisServer(Path(tmp) / "redis")
        url = server.start()
        if url is None:
            print("redis-server could not be started: nothing to measure")
            return
        try:
            store = RedisStorage.from_url(url, prefix="bench:")
            header(f"RedisStorage cycles against GET + SET, {rounds} rounds x {ops} updates, redis-py {redis.__version__}")
            cases = sync_cases(store, ops)
            for sample in cases.values():
                sample()  # connect, load the scripts
            report("sync (one client, one thread)", interleaved(cases, rounds))
            loop = asyncio.new_event_loop()
            client = redis.asyncio.Redis.from_url(url)
            acases = async_cases(store, client, loop, ops)
            for sample in acases.values():
                sample()
            report("asyncio (one event loop)", interleaved(acases, rounds))
            loop.run_until_complete(client.aclose())
            loop.run_until_complete(store.aclose())
            loop.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
