"""Question 6: how much memory does a session kept in MemoryStorage take, against the objects themselves?

``tracemalloc`` counts the bytes still allocated after filling a container with N cart
sessions (``_common.Cart``: 5 nested items, 5 tags, a datetime) under keys like a chat id's,
garbage collected, against the same count before; divided by N. Three containers:

- the plain dataclass objects, ``{key: Cart()}``: what a bot keeping sessions in a dict holds;
- MemoryStorage, holding each session as the engine writes it (the codec's dict inside the
  record ``{"data", "schema", "saved_at"}``), as JSON bytes;
- for reference, those JSON bytes as ``orjson.dumps`` returns them, kept in a dict: what
  MemoryStorage kept before it copied them (orjson's result holds on to its whole working buffer).

Every figure includes the dict and its key strings. Sizes depend on the Python version (objects
got smaller in 3.12 and 3.13), so the ratio is the figure to compare.

Standalone: ``python benchmarks/memory_use.py [--quick]``.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from collections.abc import Callable

import orjson
from _common import Cart, Context, context, header, ratio, table

from telesession import MemoryStorage
from telesession.codec import codec_for


def _record() -> dict[str, object]:
    return {"data": codec_for(Cart).encode(Cart()), "schema": 0, "saved_at": time.time()}


def bytes_per_session(fill: Callable[[int], object], n: int) -> float:
    """Bytes still allocated per session after ``fill(n)`` built its container (kept alive while measured)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = fill(n)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return (after - before) / n


def plain_objects(n: int) -> object:
    return {str(1_000_000 + i): Cart() for i in range(n)}


def memory_storage(n: int) -> object:
    storage = MemoryStorage()
    for i in range(n):
        storage.set(str(1_000_000 + i), _record())
    return storage


def orjson_as_returned(n: int) -> object:
    return {str(1_000_000 + i): orjson.dumps(_record()) for i in range(n)}


def run(ctx: Context) -> None:
    header("Memory: a session in MemoryStorage against the plain objects (tracemalloc)")
    n = 2_000 if ctx.quick else 10_000
    _record()  # the codec is built once, outside the measurement
    json_bytes = len(orjson.dumps(_record()))
    plain = bytes_per_session(plain_objects, n)
    stored = bytes_per_session(memory_storage, n)
    returned = bytes_per_session(orjson_as_returned, n)
    rows = [
        ["plain dataclass objects, {key: Cart()}", plain, "1.00x"],
        ["MemoryStorage (JSON bytes, copied to their size)", stored, ratio(stored / plain)],
        ["  for reference: orjson.dumps results kept as returned", returned, ratio(returned / plain)],
    ]
    table(["container", "bytes/session", "x plain"], rows, title=f"{n:,} cart sessions, each {json_bytes} bytes of JSON, dict and keys included")
    ctx.results["memory"] = {"plain": plain, "stored": stored, "ratio": stored / plain, "as_returned": returned}


if __name__ == "__main__":
    with context("--quick" in sys.argv) as c:
        run(c)
