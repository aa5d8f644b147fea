"""Question 4: how close does FileStorage come to the cost of a durable write, and does an unchanged session write?

The floor: what any safe read-modify-write of one file per session must do, written by hand
with nothing else around it: ``fcntl.flock`` on a lock file whose descriptor stays open,
read the record file, write a temp file, ``fsync``, ``os.replace``, unlock.

Against it, through a real ``TeleBot(threaded=False)`` and ``SessionMiddleware`` on a
FileStorage, 200 private chats round-robin, batches of 100, counter session:

- changed: the handler increments the counter, so every update saves;
- unchanged: the handler only reads the counter, so no update should write.

The three run interleaved (order rotated), each sample over the same number of operations,
on 200 records each; the ratio is the median of per-round ratios to the floor. In the same
rounds, each step (lock, read, write) is also timed alone, the floor's way and FileStorage's
(``lock(key)``, ``get``, ``set``), to show where the difference goes. After the
unchanged runs the script compares every record file's inode, mtime and bytes with what they
were before: a write (atomic replace makes a new inode) would show.

Standalone: ``python benchmarks/durable_write.py [--quick]``.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
from _common import Context, Counter, batches, context, header, median, new_bot, ratio, table, timed, updates_round_robin
from telebot import TeleBot, types

from telesession import FileStorage, SessionMiddleware

CHATS = 200
BATCH = 100


class Floor:
    """Hand-written durable read-modify-write of one file per key, lock fds opened once."""

    def __init__(self, directory: Path, keys: list[str]):
        directory.mkdir(parents=True)
        self.paths = [directory / f"{k}.json" for k in keys]
        self.lock_fds = [os.open(directory / f"{k}.lock", os.O_RDWR | os.O_CREAT, 0o600) for k in keys]
        for path in self.paths:
            path.write_bytes(orjson.dumps({"key": path.stem, "value": {"data": {"count": 0}}}))

    def update(self, i: int) -> None:
        fd, path = self.lock_fds[i], self.paths[i]
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            self.write(path, path.read_bytes())
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @staticmethod
    def write(path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(out, data)
            os.fsync(out)
        finally:
            os.close(out)
        os.replace(tmp, path)

    # The steps alone, over every key, for the parts table.
    def lock_all(self) -> None:
        for fd in self.lock_fds:
            fcntl.flock(fd, fcntl.LOCK_EX)
            fcntl.flock(fd, fcntl.LOCK_UN)

    def read_all(self) -> None:
        for path in self.paths:
            path.read_bytes()

    def write_all(self) -> None:
        for path in self.paths:
            self.write(path, b'{"key":"x","value":{"data":{"count":1}}}')

    def run(self, n: int) -> None:
        keys = len(self.paths)
        for i in range(n):
            self.update(i % keys)

    def close(self) -> None:
        for fd in self.lock_fds:
            os.close(fd)


def file_bot(storage: FileStorage, changed: bool) -> TeleBot:
    bot = new_bot()
    bot.setup_middleware(SessionMiddleware(initial=Counter, storage=storage))
    if changed:

        @bot.message_handler()
        def count(message: types.Message, session: Counter) -> None:
            session.count += 1

    else:

        @bot.message_handler()
        def peek(message: types.Message, session: Counter) -> None:
            session.count  # noqa: B018 - reads only

    return bot


def run_updates(bot: TeleBot, updates: list[types.Update]) -> None:
    for batch in batches(updates, BATCH):
        bot.process_new_updates(list(batch))


def snapshot(storage: FileStorage, keys: list[str]) -> dict[str, tuple[int, int, bytes]]:
    """inode, mtime (ns) and bytes of every record file."""
    out = {}
    for k in keys:
        path = storage.file(k)
        st = os.stat(path)
        out[k] = (st.st_ino, st.st_mtime_ns, path.read_bytes())
    return out


def run(ctx: Context) -> None:
    header("4. The durable-write floor vs FileStorage through the middleware (counter session, 200 chats)")
    n, rounds = (200, 3) if ctx.quick else (400, 9)  # short rounds: fsync's cost drifts with the disk's load
    base = ctx.root / "durable"
    updates = updates_round_robin(CHATS, CHATS) * (n // CHATS)  # 200 parsed updates, replayed
    keys = [str(1000 + i) for i in range(CHATS)]  # the chats updates_round_robin uses

    floor = Floor(base / "floor", keys)
    changed_storage = FileStorage(base / "changed")
    unchanged_storage = FileStorage(base / "unchanged")
    changed_bot = file_bot(changed_storage, changed=True)
    unchanged_bot = file_bot(unchanged_storage, changed=False)
    for storage in (changed_storage, unchanged_storage):  # every chat has a stored record
        run_updates(file_bot(storage, changed=True), updates_round_robin(CHATS, CHATS))
    floor.run(CHATS)
    before = snapshot(unchanged_storage, keys)
    run_updates(changed_bot, updates_round_robin(CHATS, CHATS))

    def per_update(fn: object) -> float:
        return timed(fn) / n * 1e6  # type: ignore[arg-type]

    records = {k: changed_storage.get(k) for k in keys}

    def per_key(fn: object) -> float:
        return timed(fn) / len(keys) * 1e6  # type: ignore[arg-type]

    def storage_lock_all() -> None:
        for k in keys:
            with changed_storage.lock(k):
                pass

    def storage_read_all() -> None:
        for k in keys:
            changed_storage.get(k)

    def storage_write_all() -> None:
        for k in keys:
            changed_storage.set(k, records[k])

    cases: dict[str, Callable[[], float]] = {
        "floor": lambda: per_update(lambda: floor.run(n)),
        "changed": lambda: per_update(lambda: run_updates(changed_bot, updates)),
        "unchanged": lambda: per_update(lambda: run_updates(unchanged_bot, updates)),
        "floor lock": lambda: per_key(floor.lock_all),
        "floor read": lambda: per_key(floor.read_all),
        "floor write": lambda: per_key(floor.write_all),
        "storage lock": lambda: per_key(storage_lock_all),
        "storage read": lambda: per_key(storage_read_all),
        "storage write": lambda: per_key(storage_write_all),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            os.sync()  # no sample pays, through ext4's journal, for what the one before it left dirty
            samples[name].append(cases[name]())
        print(f"  round {r + 1}/{rounds} done", flush=True)
    for update in updates:
        update.message.__dict__.pop("session", None)

    after = snapshot(unchanged_storage, keys)
    rewritten = sum(1 for k in keys if before[k] != after[k])
    bytes_changed = sum(1 for k in keys if before[k][2] != after[k][2])
    unchanged_updates = n * rounds
    floor.close()

    us = {name: median(values) for name, values in samples.items()}
    x = {name: median([a / b for a, b in zip(samples[name], samples["floor"])]) for name in cases}
    rows = [
        ["floor: flock + read + temp write + fsync + replace + unlock", us["floor"], ratio(x["floor"]), "yes"],
        ["FileStorage via SessionMiddleware, session changed", us["changed"], ratio(x["changed"]), "yes"],
        ["FileStorage via SessionMiddleware, session unchanged", us["unchanged"], ratio(x["unchanged"]),
         f"{rewritten} of {CHATS} records rewritten"],
    ]  # fmt: skip
    table(
        ["operation", "us/update", "x floor", "writes"],
        rows,
        title=f"median of {rounds} interleaved rounds of {n} updates each",
    )
    print(
        f"  unchanged session: {unchanged_updates:,} updates; record files with a new inode or mtime: {rewritten}, "
        f"with other bytes: {bytes_changed}"
    )
    ctx.results["durable"] = {"us": us, "ratio": x, "rewritten": rewritten, "updates": unchanged_updates}

    rows = [
        [label, us[f"floor {step}"], us[f"storage {step}"], f"{us[f'storage {step}'] - us[f'floor {step}']:+.1f}"]
        for step, label in (
            ("lock", "lock + unlock (floor: flock on a kept-open fd; FileStorage.lock(key): open + flock + close per hold)"),
            ("read", "read the record (floor: read_bytes; FileStorage.get: read + orjson.loads)"),
            ("write", "write the record (floor: temp + fsync + replace; FileStorage.set: orjson.dumps + the same)"),
        )
    ]
    rest = median([
        samples["changed"][r] - samples["floor"][r]
        - sum(samples[f"storage {step}"][r] - samples[f"floor {step}"][r] for step in ("lock", "read", "write"))
        for r in range(rounds)
    ])  # fmt: skip
    rows.append(["the rest: telebot dispatch, the middleware's Python, fsync noise (per-round median)", "-", "-", f"{rest:+.1f}"])
    table(["where FileStorage's extra over the floor goes (steps timed alone, same rounds)", "floor us", "FileStorage us", "difference"], rows)


if __name__ == "__main__":
    with context("--quick" in sys.argv) as c:
        run(c)
