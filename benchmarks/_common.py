"""What the benchmark scripts share: session classes, update factories, storages, timing, tables.

Every comparison in these scripts is a ratio measured in one run: the machine is small and
shared, so absolute figures move a lot between runs while ratios of interleaved medians hold.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parent.parent
# The telesession measured: this checkout's (run without installing the package), or the one in
# the directory BENCH_TELESESSION names (versus.py measures an earlier commit that way).
_MEASURED = os.environ.get("BENCH_TELESESSION", str(REPO))
if _MEASURED not in sys.path:
    sys.path.insert(0, _MEASURED)

import telebot  # noqa: E402
from telebot import types  # noqa: E402

from telesession import FileStorage, MemoryStorage, SessionStorage  # noqa: E402

# -- session classes ------------------------------------------------------------------------


@dataclass
class Counter:
    count: int = 0


@dataclass
class Item:
    sku: str
    title: str
    price: float
    qty: int = 1


def _items() -> list[Item]:
    return [Item(sku=f"SKU-{i:04d}", title=f"Item number {i}", price=9.99 + i, qty=i + 1) for i in range(5)]


def _tags() -> dict[str, str]:
    return {f"tag{i}": f"value {i}" for i in range(5)}


@dataclass
class Cart:
    """A realistic session: 5 nested items, a dict of 5 strings, an Optional, a datetime."""

    items: list[Item] = field(default_factory=_items)
    tags: dict[str, str] = field(default_factory=_tags)
    coupon: Optional[str] = None
    created: datetime = field(default_factory=lambda: datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    visits: int = 0


# -- updates --------------------------------------------------------------------------------


def message_update(update_id: int, chat_id: int, text: str = "hello") -> types.Update:
    """A private-chat text message (the user is the chat)."""
    update: types.Update = types.Update.de_json(  # type: ignore[no-untyped-call]
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "date": 1_760_000_000,
                "chat": {"id": chat_id, "type": "private", "first_name": "U"},
                "from": {"id": chat_id, "is_bot": False, "first_name": "U"},
                "text": text,
            },
        }
    )
    return update


def updates_round_robin(n: int, chats: int, first_chat: int = 1000) -> list[types.Update]:
    """``n`` message updates spread round-robin over ``chats`` chats."""
    return [message_update(i + 1, first_chat + i % chats) for i in range(n)]


def batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def new_bot(threaded: bool = False, num_threads: int = 2) -> telebot.TeleBot:
    return telebot.TeleBot("123:TEST", threaded=threaded, num_threads=num_threads, use_class_middlewares=True)


# -- storages -------------------------------------------------------------------------------


class Storages:
    """Makes each kind of telesession storage in a temp dir; a kind whose module is missing is skipped."""

    KINDS = ("memory", "file", "sqlite", "redis")

    def __init__(self, root: Path, redis_url: str | None):
        self.root = root
        self.redis_url = redis_url
        self.missing: dict[str, str] = {}
        self._n = 0
        for kind, module in (("sqlite", "telesession.storage.sqlite"), ("redis", "telesession.storage.redis")):
            try:
                importlib.import_module(module)
            except ImportError as e:
                self.missing[kind] = f"{module} not importable ({e})"
        if redis_url is None and "redis" not in self.missing:
            self.missing["redis"] = "no redis-server"

    def available(self, kinds: Sequence[str] = KINDS) -> list[str]:
        return [k for k in kinds if k not in self.missing]

    def note_skipped(self, kinds: Sequence[str] = KINDS) -> None:
        for kind in kinds:
            if kind in self.missing:
                print(f"  (skipped {kind}: {self.missing[kind]})")

    def make(self, kind: str) -> SessionStorage:
        self._n += 1
        place = self.root / f"{kind}-{self._n}"
        if kind == "memory":
            return MemoryStorage()
        if kind == "file":
            return FileStorage(place)
        if kind == "sqlite":
            from telesession.storage.sqlite import SQLiteStorage

            return SQLiteStorage(place / "sessions.db")
        if kind == "redis":
            from telesession.storage.redis import RedisStorage

            assert self.redis_url is not None
            return RedisStorage.from_url(self.redis_url, prefix=f"bench{self._n}:")
        raise ValueError(kind)


class RedisServer:
    """A private redis-server on 127.0.0.1, no persistence, in a temp dir; stopped on exit."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url: str | None = None

    def start(self) -> str | None:
        exe = shutil.which("redis-server")
        if exe is None:
            return None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    self.url = f"redis://127.0.0.1:{port}/0"
                    return self.url
            time.sleep(0.05)
        self.stop()
        return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@dataclass
class Context:
    """What run.py hands every benchmark: options, a temp dir, the storages, results for the summary."""

    quick: bool
    root: Path
    storages: Storages
    results: dict[str, Any] = dataclasses.field(default_factory=dict)


def machine() -> str:
    """The Python and the machine, for the head of every run's output."""
    return f"Python {platform.python_version()} ({platform.python_implementation()}), {os.cpu_count()} CPUs, {platform.platform()}"


@contextlib.contextmanager
def context(quick: bool) -> Iterator[Context]:
    """A temp dir (removed at exit) and a private redis-server (stopped at exit); prints the machine first."""
    print(machine(), flush=True)
    root = Path(tempfile.mkdtemp(prefix="telesession-bench-"))
    server = RedisServer(root / "redis")
    try:
        url = server.start()
        if url is None:
            print("note: redis-server could not be started; Redis rows are skipped")
        yield Context(quick=quick, root=root, storages=Storages(root, url))
    finally:
        server.stop()
        try:
            print(f"cleaning up {root} ...", flush=True)
        except OSError:
            pass  # stdout closed (piped into head): clean up all the same
        finally:
            shutil.rmtree(root, ignore_errors=True)


# -- timing ---------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def per_op_us(fn: Callable[[], object], ops: int) -> float:
    """Microseconds per op for one call of ``fn`` that performs ``ops`` ops."""
    return timed(fn) / ops * 1e6


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank: a value that occurred, never an interpolation."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)]


def interleaved(cases: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run every case once per round, rotating the order each round; each call returns one sample.

    Rotating keeps a case from always following the same neighbour (cache, GC, disk flush).
    """
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(cases[name]())
    return samples


# -- output ---------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> None:
    """Print a plain aligned table: the first column and text left-aligned, numbers right-aligned."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    right = [i > 0 and bool(rows) and all(_numeric(row[i]) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  " + "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    if title:
        print(f"\n{title}")
    print(line(headers))
    print(line(["-" * w for w in widths]))
    for row in cells:
        print(line(row))
    sys.stdout.flush()


def _numeric(value: object) -> bool:
    if isinstance(value, (int, float)):
        return True
    text = str(value).replace(",", "").removeprefix("+").removesuffix("x").removesuffix("%")
    try:
        float(text)
    except ValueError:
        return text in ("-", "")
    return True


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(value: float) -> str:
    return f"{value:.2f}x"


def header(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)
