"""Question 3: does a save or a load cost more when many sessions are stored?

FileStorage with 10, 1,000 and 100,000 stored sessions; SQLiteStorage with 10, 1,000,
100,000 and 1,000,000 (``--quick``: 10, 1,000, 10,000 files and 10, 1,000, 100,000 rows).
Every N gets its own store, all alive at once, so the sizes are measured side by side in
interleaved rounds (order rotated) and compared as medians of per-round ratios to N = 10.

The stores are filled directly in each storage's own format, not through the storage, to
keep the run short: files by a plain write loop (``FileStorage.file(key)`` gives the path,
the content is orjson of ``{"key": key, "value": record}``); SQLite by ``executemany`` in one
transaction through sqlite3, into a table created by the storage itself (its DDL is copied
from a scratch database, so the format follows sqlite.py). A record is what the middleware
writes for the cart session of question 1 (``{"data": ..., "schema": 0, "saved_at": ...}``).

Timed: ``storage.set(key, record)`` (save: FileStorage writes a temp file, fsyncs and
renames; SQLite upserts one row in WAL mode; every save has a new ``saved_at``, as the
middleware's do) and ``storage.get(key)`` (load), on keys drawn at random from all N stored
ones ("save", "load") and, for saves, also from a fixed working set of 200 keys spread over
them ("save 200 hot": many sessions stored, few active, as in a real bot). The storage verbs
alone, without the middleware and its per-key lock (question 1 has those).
Each sample starts after ``os.sync()``: otherwise a store's fsync (FileStorage's
every save, SQLite's at each WAL checkpoint) also flushes, through ext4's journal, what the
store timed before it left dirty. Disk MB counts allocated blocks (a small file takes a 4 KiB block; SQLite: the
database directory, WAL and lock files included).

Standalone: ``python benchmarks/scale.py [--quick]``.
"""

from __future__ import annotations

import os
import random
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from _common import Cart, Context, context, header, median, ratio, table, timed

from telesession import FileStorage, SessionStorage
from telesession.codec import codec_for

HOT = 200  # the working set of the "hot" save: as many chats as question 1 uses
FIRST_KEY = 1_000_000_000  # keys are str(FIRST_KEY + i): equal length, so byte order = number order


def record() -> dict[str, Any]:
    return {"data": codec_for(Cart).encode(Cart()), "schema": 0, "saved_at": time.time()}


def key(i: int) -> str:
    return str(FIRST_KEY + i)


def progress(what: str, done: int, total: int, started: float) -> None:
    print(f"    {what}: {done:,}/{total:,} ({time.monotonic() - started:.1f} s)", flush=True)


def fill_files(storage: FileStorage, n: int) -> None:
    value = record()
    started = time.monotonic()
    step = max(n // 5, 1)
    for i in range(n):
        k = key(i)
        with open(storage.file(k), "wb") as f:
            f.write(orjson.dumps({"key": k, "value": value}))
        if n >= 10_000 and (i + 1) % step == 0:
            progress(f"{n:,} files", i + 1, n, started)


def sqlite_ddl(scratch: Path) -> list[str]:
    """The schema SQLiteStorage creates, read back from a scratch database it made."""
    from telesession.storage.sqlite import SQLiteStorage

    SQLiteStorage(scratch).close()
    with sqlite3.connect(scratch) as conn:
        return [sql for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")]


def fill_sqlite(path: Path, ddl: list[str], n: int) -> None:
    value = orjson.dumps(record())
    started = time.monotonic()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for sql in ddl:
            conn.execute(sql)
        conn.execute("PRAGMA journal_mode=OFF")  # a bulk load: the storage turns WAL on when it opens the file
        conn.execute("BEGIN")
        chunk = 200_000
        for start in range(0, n, chunk):
            conn.executemany(
                'INSERT INTO "sessions" (key, value) VALUES (?, ?)',
                ((key(i).encode(), value) for i in range(start, min(n, start + chunk))),
            )
            if n >= 100_000:
                progress(f"{n:,} rows", min(n, start + chunk), n, started)
        conn.execute("COMMIT")
    finally:
        conn.close()


def disk_mb(path: Path) -> float:
    """Allocated blocks under ``path`` (a file or a directory tree), in MB."""
    if path.is_file():
        return os.stat(path).st_blocks * 512 / 1e6
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total / 1e6


def op_sampler(storage: SessionStorage, n: int, op: str, loops: int, rng: random.Random) -> Callable[[], float]:
    """One sample of ``op``: ``save``/``load`` on random stored keys, ``save_hot`` on 200 keys spread over them."""
    value = record()
    hot = [key(i * n // HOT) for i in range(min(HOT, n))]
    keys: list[str] = []
    values: list[dict[str, Any]] = []

    def save() -> None:
        for k, v in zip(keys, values):
            storage.set(k, v)

    def load() -> None:
        for k in keys:
            storage.get(k)

    def sample() -> float:
        nonlocal keys, values
        keys = [rng.choice(hot) if op == "save_hot" else key(rng.randrange(n)) for _ in range(loops)]
        # A new saved_at for every save, as the middleware writes. Saving the very bytes a row
        # already holds changes no page in SQLite (the B-tree compares the cell and skips the
        # write), so with one record for all saves the small stores, whose few keys are saved
        # over and over, measured saves that wrote nothing: no WAL frame, no checkpoint.
        values = [{**value, "saved_at": value["saved_at"] + i} for i in range(loops)]
        return timed(load if op == "load" else save) / loops * 1e6

    return sample


OPS = ("save", "save_hot", "load")


def measure(
    name: str, stores: dict[int, SessionStorage], rounds: int, loops: dict[str, int], rng: random.Random
) -> dict[str, dict[int, float]]:
    """Median us per op and median ratio to the smallest N, per op and N."""
    samplers = {(op, n): op_sampler(s, n, op, loops[op], rng) for n, s in stores.items() for op in OPS}
    samples: dict[tuple[str, int], list[float]] = {c: [] for c in samplers}
    order = list(samplers)
    for r in range(rounds):
        shift = r % len(order)
        for case in order[shift:] + order[:shift]:
            os.sync()  # start each sample with no dirty pages of the store timed before it
            samples[case].append(samplers[case]())
    smallest = min(stores)
    out: dict[str, dict[int, float]] = {}
    for op in OPS:
        out[op] = {n: median(samples[op, n]) for n in stores}
        out[op + "_ratio"] = {n: median([a / b for a, b in zip(samples[op, n], samples[op, smallest])]) for n in stores}
    return out


def report(name: str, stores: dict[int, SessionStorage], places: dict[int, Path], m: dict[str, dict[int, float]], rounds: int) -> None:
    rows = [
        [f"{n:,}"] + [x for op in OPS for x in (m[op][n], ratio(m[op + "_ratio"][n]))] + [f"{disk_mb(places[n]):,.2f}"]
        for n in sorted(stores)
    ]
    table(
        ["N stored", "save us", "vs N=10", "save 200 hot us", "vs N=10", "load us", "vs N=10", "disk MB"],
        rows,
        title=f"{name}: median of {rounds} interleaved rounds; ratios are medians of per-round ratios",
    )


def run(ctx: Context) -> None:
    header("3. Scale: save and load cost vs number of stored sessions")
    rng = random.Random(1)
    file_ns = [10, 1_000, 10_000] if ctx.quick else [10, 1_000, 100_000]
    sqlite_ns = [10, 1_000, 100_000] if ctx.quick else [10, 1_000, 100_000, 1_000_000]
    rounds = 3 if ctx.quick else 5
    base = ctx.root / "scale"

    print("  filling FileStorage directories ...", flush=True)
    file_places = {n: base / f"files-{n}" for n in file_ns}
    file_stores: dict[int, SessionStorage] = {}
    for n in file_ns:
        storage = FileStorage(file_places[n])
        fill_files(storage, n)
        file_stores[n] = storage
    m = measure("file", file_stores, rounds, {"save": 40 if ctx.quick else 100, "save_hot": 40 if ctx.quick else 100, "load": 500}, rng)
    report("FileStorage (save = temp file + fsync + rename)", file_stores, file_places, m, rounds)
    ctx.results["scale_file"] = m

    if "sqlite" in ctx.storages.missing:
        ctx.storages.note_skipped(["sqlite"])
    else:
        from telesession.storage.sqlite import SQLiteStorage

        print("  filling SQLite databases ...", flush=True)
        ddl = sqlite_ddl(base / "scratch.db")
        db_places = {n: base / f"sqlite-{n}" / "sessions.db" for n in sqlite_ns}
        db_stores: dict[int, SessionStorage] = {}
        for n in sqlite_ns:
            db_places[n].parent.mkdir(parents=True)
            fill_sqlite(db_places[n], ddl, n)
            db_stores[n] = SQLiteStorage(db_places[n])
        # A save appends one page to the WAL, which SQLite checkpoints every 1,000 pages: samples of
        # 1,000 saves each carry one checkpoint, instead of some samples all of them.
        m = measure("sqlite", db_stores, rounds, {"save": 1000, "save_hot": 1000, "load": 500}, rng)
        report("SQLiteStorage (WAL, synchronous=NORMAL)", db_stores, {n: p.parent for n, p in db_places.items()}, m, rounds)
        for storage in db_stores.values():
            storage.close()
        ctx.results["scale_sqlite"] = m
    print(f"  removing the filled stores in {base} ...", flush=True)


if __name__ == "__main__":
    with context("--quick" in sys.argv) as c:
        run(c)
