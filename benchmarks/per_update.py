"""Question 1: what does a session cost per update, through a real TeleBot (and AsyncTeleBot)?

A synchronous ``TeleBot(threaded=False, use_class_middlewares=True)`` gets message updates
through ``process_new_updates`` in batches of 100, spread round-robin over 200 private chats.
Baseline ("bare dispatch"): the same bot and a one-line message handler, no session
middleware. Against it: ``SessionMiddleware`` on each storage, for a counter session (the
handler increments it) and a cart session (5 nested items, a dict of 5 strings, an Optional, a
datetime; the handler changes one int field), so every update loads, decodes, encodes and
writes its session.

Handlers reach the session as README.md shows first, ``message.session``. On MemoryStorage
the same sessions are also measured with handlers that take it as a parameter
(``def count(message, session)``): telebot then copies its middleware data and calls the
handler with keywords, which costs more in telebot itself (the two "inject-only" rows show
how much, with a middleware that only hands over a ready object).

Lazy sessions, on each storage, counter session: ``SessionMiddleware(..., lazy=True)`` with
the bare handler, which never asks for its session (an untouched update: the target is <= 1.2x
bare dispatch), and with a handler that calls ``sessions.of(message)`` and increments it.

AsyncTeleBot: the same updates through ``await bot.process_new_updates(batch)`` of a real
``AsyncTeleBot`` (it runs a batch's updates as concurrent tasks) with ``AsyncSessionMiddleware``,
against bare AsyncTeleBot dispatch of the same one-line handler, in a table of its own.

The 200 parsed updates (one per chat) are replayed for every pass, as a live bot holds only
its current batch. Each configuration is built once and warmed up (every chat already has a
stored session). A round runs bare, configuration, bare for every configuration, in an order
rotated each round; a configuration's ratio in a round is its time over the mean of the two
bare runs around it. Tables show medians over the rounds. Memory (and lazy, untouched) runs
20,000 updates per sample (AsyncTeleBot on memory 10,000); file, SQLite and Redis 2,000 (their
cost is I/O, flat per update), as the ``updates`` column shows.

Reference rows, a class middleware that only hands the handler a ready object, show
telebot's own share of any session middleware; a last table splits the memory-storage cost:
telesession's hooks inside telebot's per-update call, and the engine's pieces (key, hold,
load, finish) and their parts (codec, JSON, storage) timed alone on one warm record.

Standalone: ``python benchmarks/per_update.py [--quick] [--profile memory:cart]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from _common import (
    Cart,
    Context,
    Counter,
    batches,
    context,
    header,
    median,
    new_bot,
    ratio,
    table,
    timed,
    updates_round_robin,
)
from telebot import TeleBot, types
from telebot.async_telebot import AsyncTeleBot
from telebot.handler_backends import BaseMiddleware

from telesession import MemoryStorage, SessionMiddleware, SessionStorage, _dispatch
from telesession.asyncio import AsyncSessionMiddleware

CHATS = 200
BATCH = 100
SESSIONS: dict[str, type] = {"counter": Counter, "cart": Cart}
FIELD = {"counter": "count", "cart": "visits"}  # the int field the handlers increment


@dataclass
class Setup:
    name: str  # the configuration, as --profile names it and run.py's targets find it
    bot: Any  # TeleBot or AsyncTeleBot
    updates: list[types.Update]
    storage: SessionStorage | None


# -- sync bots ---------------------------------------------------------------------------------


def bare_bot() -> TeleBot:
    bot = new_bot()
    touch_only(bot)
    return bot


def touch_only(bot: TeleBot) -> None:
    @bot.message_handler()
    def handle(message: types.Message) -> None:
        message.text  # noqa: B018 - touch the message, as a real handler would


def handler_for(bot: TeleBot, session: str, param: bool) -> None:
    """Register the benchmark's handler: it changes one int field of the session."""
    field = FIELD[session]
    if param:

        @bot.message_handler()
        def with_param(message: types.Message, session: Any) -> None:
            setattr(session, field, getattr(session, field) + 1)

    else:

        @bot.message_handler()
        def with_attr(message: types.Message) -> None:
            obj = message.session  # type: ignore[attr-defined]
            setattr(obj, field, getattr(obj, field) + 1)


def session_bot(storage: SessionStorage, session: str, param: bool = False) -> TeleBot:
    bot = new_bot()
    bot.setup_middleware(SessionMiddleware(initial=SESSIONS[session], storage=storage))
    handler_for(bot, session, param)
    return bot


def lazy_bot(storage: SessionStorage, touched: bool) -> TeleBot:
    """``lazy=True``, counter session; the handler asks for the session (and increments it) only if ``touched``."""
    bot = new_bot()
    sessions = SessionMiddleware(initial=Counter, storage=storage, lazy=True)
    bot.setup_middleware(sessions)
    if not touched:
        touch_only(bot)
        return bot

    @bot.message_handler()
    def count(message: types.Message) -> None:
        sessions.of(message).count += 1

    return bot


class InjectOnly(BaseMiddleware):
    """A reference class middleware: hands the handler a ready session object, stores nothing.

    Its cost over bare dispatch is telebot's share of any session middleware: calling the
    hooks and, for a handler that takes ``session``, passing it by keyword.
    """

    update_types = ["message"]

    def __init__(self, session: object):
        super().__init__()  # type: ignore[no-untyped-call]
        self.session = session

    def pre_process(self, message: types.Message, data: dict[str, Any]) -> None:
        message.session = self.session  # type: ignore[attr-defined]
        data["session"] = self.session

    def post_process(self, message: types.Message, data: dict[str, Any], exception: BaseException | None) -> None:
        pass


def inject_only_bot(param: bool) -> TeleBot:
    bot = new_bot()
    bot.setup_middleware(InjectOnly(Counter()))
    handler_for(bot, "counter", param)
    return bot


def build(ctx: Context, name: str) -> tuple[TeleBot, SessionStorage | None]:
    """The bot a configuration name stands for: ``bare``, ``inject-only:counter[:param]``,
    ``KIND:SESSION[:param]``, ``KIND:lazy`` (untouched) or ``KIND:lazy:touched``."""
    if name == "bare":
        return bare_bot(), None
    kind, what, *rest = name.split(":")
    if kind == "inject-only":
        return inject_only_bot(rest == ["param"]), None
    storage = ctx.storages.make(kind)
    if what == "lazy":
        return lazy_bot(storage, rest == ["touched"]), storage
    return session_bot(storage, what, rest == ["param"]), storage


def describe(name: str) -> tuple[str, str, str]:
    """(configuration, session, what the handler reads) for a configuration name, as the table shows them."""
    kind, what, *rest = name.split(":")
    if kind == "inject-only":
        return "telebot class middleware that only injects a session", "-", "(message, session)" if rest else "message.session"
    if what == "lazy":
        return f"SessionMiddleware(lazy=True) + {kind}", "counter", "sessions.of(message)" if rest else "nothing (untouched)"
    return f"SessionMiddleware + {kind}", what, "(message, session)" if rest else "message.session"


# -- async bots --------------------------------------------------------------------------------


def async_bare_bot() -> AsyncTeleBot:
    bot = AsyncTeleBot("123:TEST")

    @bot.message_handler()
    async def handle(message: types.Message) -> None:
        message.text  # noqa: B018

    return bot


def async_session_bot(storage: SessionStorage, session: str) -> AsyncTeleBot:
    bot = AsyncTeleBot("123:TEST")
    bot.setup_middleware(AsyncSessionMiddleware(initial=SESSIONS[session], storage=storage))
    field = FIELD[session]

    @bot.message_handler()
    async def with_attr(message: types.Message) -> None:
        obj = message.session  # type: ignore[attr-defined]
        setattr(obj, field, getattr(obj, field) + 1)

    return bot


# -- running and timing ------------------------------------------------------------------------


def run_updates(bot: TeleBot, updates: Sequence[types.Update]) -> None:
    for batch in batches(updates, BATCH):
        bot.process_new_updates(list(batch))


def run_async_updates(loop: asyncio.AbstractEventLoop, bot: AsyncTeleBot, updates: Sequence[types.Update]) -> None:
    async def feed() -> None:
        for batch in batches(updates, BATCH):
            await bot.process_new_updates(list(batch))

    loop.run_until_complete(feed())


def forget(updates: Sequence[types.Update]) -> None:
    """Drop what a pass left on the replayed messages (the session), so each pass starts from fresh objects' shape."""
    for update in updates:
        update.message.__dict__.pop("session", None)


def sample(bot: TeleBot, updates: list[types.Update]) -> float:
    """Microseconds per update for one pass."""
    seconds = timed(lambda: run_updates(bot, updates))
    forget(updates)
    return seconds / len(updates) * 1e6


def replay(n: int) -> list[types.Update]:
    """``n`` updates round-robin over the chats: the same 200 parsed updates (one per chat), replayed.

    A live bot holds only its current batch; holding 20,000 parsed updates alive instead made
    the garbage collector's full passes cost the cart session ~10 us more per update.
    """
    return updates_round_robin(CHATS, CHATS) * (n // CHATS)


def counts(quick: bool) -> tuple[int, int, int]:
    """(updates for bare and memory, updates for I/O storages, rounds)."""
    return (5_000, 600, 3) if quick else (20_000, 2_000, 5)


def interleaved_with_bare(
    setups: list[Setup], measure: Callable[[Any, list[types.Update]], float], bare: Any, rounds: int, label: str
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[int, list[float]]]:
    """Each round: bare, configuration, bare for every configuration, in an order rotated each round.

    Returns the configurations' times, their per-round ratios to the mean of the two bare runs
    around them, and the bare times by number of updates.
    """
    times: dict[str, list[float]] = {s.name: [] for s in setups}
    ratios: dict[str, list[float]] = {s.name: [] for s in setups}
    bare_times: dict[int, list[float]] = {len(s.updates): [] for s in setups}
    # Every configuration's bot, storage and updates are alive at once here, as in no live bot:
    # frozen, they stay out of the GC's full passes, which would otherwise walk them all during
    # every configuration's run (and cost the larger sessions most). What an update allocates
    # is collected as usual.
    gc.collect()
    gc.freeze()
    for r in range(rounds):
        shift = r % len(setups)
        for setup in setups[shift:] + setups[:shift]:
            before = measure(bare, setup.updates)
            t = measure(setup.bot, setup.updates)
            after = measure(bare, setup.updates)
            bare_times[len(setup.updates)] += [before, after]
            times[setup.name].append(t)
            ratios[setup.name].append(t / ((before + after) / 2))
        print(f"  {label}: round {r + 1}/{rounds} done", flush=True)
    gc.unfreeze()
    return times, ratios, bare_times


def results_table(
    setups: list[Setup],
    times: dict[str, list[float]],
    ratios: dict[str, list[float]],
    bare_times: dict[int, list[float]],
    first_row: list[object],
    describe_fn: Callable[[str], tuple[str, str, str]],
    title: str,
) -> dict[str, dict[str, float]]:
    rows: list[list[object]] = [first_row]
    results: dict[str, dict[str, float]] = {}
    for setup in setups:
        us = median(times[setup.name])
        x = median(ratios[setup.name])
        local_bare = median(bare_times[len(setup.updates)])
        results[setup.name] = {"us": us, "ratio": x, "bare_us": local_bare}
        label, session, reads = describe_fn(setup.name)
        rows.append([label, session, reads, len(setup.updates), us, f"+{us - local_bare:.1f}", ratio(x)])
    table(["configuration", "session", "handler reads", "updates", "us/update", "vs bare us", "x bare"], rows, title=title)
    return results


# -- the benchmark ----------------------------------------------------------------------------


def sync_names(kinds: Sequence[str]) -> list[str]:
    """Every sync configuration, in table order."""
    names = ["inject-only:counter", "inject-only:counter:param"]
    for kind in kinds:
        for session in SESSIONS:
            names.append(f"{kind}:{session}")
            if kind == "memory":
                names.append(f"{kind}:{session}:param")
        names += [f"{kind}:lazy", f"{kind}:lazy:touched"]
    return names


def updates_for(name: str, n_memory: int, n_io: int) -> int:
    """Memory, the references and untouched lazy sessions (no I/O at all) run longer samples than I/O storages."""
    kind = name.split(":")[0]
    return n_memory if kind in ("memory", "inject-only") or name.endswith(":lazy") else n_io


def run(ctx: Context) -> None:
    header("1. Per-update cost through a real TeleBot (threaded=False, process_new_updates, batches of 100, 200 chats)")
    n_memory, n_io, rounds = counts(ctx.quick)
    kinds = ctx.storages.available()
    ctx.storages.note_skipped()
    updates = {n: replay(n) for n in {n_memory, n_io}}

    setups = []
    for name in sync_names(kinds):
        bot, storage = build(ctx, name)
        run_updates(bot, updates_round_robin(CHATS * 2, CHATS))  # every chat has a stored session
        setups.append(Setup(name, bot, updates[updates_for(name, n_memory, n_io)], storage))
    bare = bare_bot()
    run_updates(bare, updates[n_io])

    times, ratios, bare_times = interleaved_with_bare(setups, sample, bare, rounds, "sync")
    bare_us = median(bare_times[n_memory])
    results = results_table(
        setups, times, ratios, bare_times,
        ["bare dispatch (no session middleware)", "-", "-", n_memory, bare_us, "+0", "1.00x"], describe,
        title=f"median of {rounds} interleaved rounds; x bare = median of per-round ratios to the bare runs around it",
    )  # fmt: skip
    for setup in setups:
        if setup.storage is not None:
            setup.storage.close()

    results.update(run_async(ctx, kinds, n_memory, n_io, rounds))
    ctx.results["per_update"] = results

    if "memory:counter" in results:
        parts_table(results, bare_us, 2_000 if ctx.quick else 20_000)


def run_async(ctx: Context, kinds: Sequence[str], n_memory: int, n_io: int, rounds: int) -> dict[str, dict[str, float]]:
    """The same updates through AsyncTeleBot: bare dispatch against AsyncSessionMiddleware."""
    loop = asyncio.new_event_loop()
    try:
        n_memory = n_memory // 2 // CHATS * CHATS  # AsyncTeleBot costs about twice the sync bot per update: half the updates
        updates = {n: replay(n) for n in {n_memory, n_io}}

        def measure(bot: AsyncTeleBot, these: list[types.Update]) -> float:
            seconds = timed(lambda: run_async_updates(loop, bot, these))
            forget(these)
            return seconds / len(these) * 1e6

        setups = []
        for kind in kinds:
            for session in SESSIONS if kind == "memory" else ("counter",):
                storage = ctx.storages.make(kind)
                bot = async_session_bot(storage, session)
                run_async_updates(loop, bot, updates_round_robin(CHATS * 2, CHATS))
                setups.append(Setup(f"async:{kind}:{session}", bot, updates[n_memory if kind == "memory" else n_io], storage))
        bare = async_bare_bot()
        run_async_updates(loop, bare, updates[n_io])

        times, ratios, bare_times = interleaved_with_bare(setups, measure, bare, rounds, "async")

        def describe_async(name: str) -> tuple[str, str, str]:
            _, kind, session = name.split(":")
            return f"AsyncSessionMiddleware + {kind}", session, "message.session"

        results = results_table(
            setups, times, ratios, bare_times,
            ["bare AsyncTeleBot dispatch (no session middleware)", "-", "-", n_memory, median(bare_times[n_memory]), "+0", "1.00x"],
            describe_async,
            title=(
                "AsyncTeleBot: await bot.process_new_updates(batch), batches of 100, 200 chats; the storage is awaited "
                "(file and SQLite in a thread, Redis through redis.asyncio)"
            ),
        )  # fmt: skip
        for setup in setups:
            if setup.storage is not None:
                loop.run_until_complete(setup.storage.aclose())  # closes the loop's clients, then close()
    finally:
        loop.close()
    return results


# -- where the memory-storage cost goes -----------------------------------------------------------


def parts(session: str, loops: int) -> dict[str, float]:
    """Microseconds of the pieces of a memory-storage update, each timed alone (best of 9 repeats).

    "hooks": telesession's pre_process + post_process as telebot calls them, in its own
    per-update call (``_run_middlewares_and_handler``, the frame the middleware anchors the
    update to), minus the same call with the inject-only middleware; no batching around it.
    The rest are the engine's steps on one stored, warm record, with their parts.
    """
    cls, field = SESSIONS[session], FIELD[session]
    messages = [u.message for u in updates_round_robin(CHATS, CHATS)]

    def dispatch(middleware: BaseMiddleware) -> Callable[[], None]:
        bot = new_bot()
        handler_for(bot, session, param=False)

        def one_pass() -> None:
            for message in messages:
                bot._run_middlewares_and_handler(message, bot.message_handlers, [middleware], "message")

        return one_pass

    def best(fn: Callable[[], object], n: int = loops) -> float:
        n = max(n // 4, 1)  # many short repeats: the best of them is more likely a quiet moment on a shared machine
        return min(timeit.repeat(fn, number=n, repeat=9)) / n * 1e6

    with_session = dispatch(SessionMiddleware(initial=cls, storage=MemoryStorage()))
    without = dispatch(InjectOnly(cls()))
    with_session()
    rounds = max(loops // CHATS, 1)
    hooks = (best(with_session, rounds) - best(without, rounds)) / CHATS

    # The engine's steps, on one stored record.
    sessions = SessionMiddleware(initial=cls, storage=MemoryStorage())
    engine, storage, codec = sessions.engine, sessions.storage, sessions.engine.format._codec
    message = messages[0]
    key = sessions.key_of(message)
    assert key is not None and codec is not None
    owner = object()

    def bump(obj: Any) -> None:
        setattr(obj, field, getattr(obj, field) + 1)

    def hold() -> None:
        engine.try_hold(key, owner).release()  # type: ignore[union-attr]

    def load() -> None:
        engine.abandon(engine.load(engine.try_hold(key, owner)))  # type: ignore[arg-type]

    def load_change_finish() -> None:
        handle = engine.load(engine.try_hold(key, owner))  # type: ignore[arg-type]
        assert handle is not None
        bump(handle.session)
        engine.finish(handle, handle.session)

    load_change_finish()  # now a record is stored
    record = storage.get(key)
    handle = engine.load(engine.try_hold(key, owner))  # type: ignore[arg-type]
    assert handle is not None and record is not None
    engine.abandon(handle)
    changed = codec.decode(record["data"])
    bump(changed)
    frame = sys._getframe()

    def bookkeeping() -> None:
        _dispatch.watch(handle, sessions, frame, id(message))
        sessions._handles.pop(id(message))
        handle.anchor = None

    t_hold, t_load = best(hold), best(load)
    return {
        "hooks": hooks,
        "key: get_session_key (per_chat) and its checks": best(lambda: sessions.key_of(message)),
        "the update's bookkeeping: its handle kept by the middleware, watched": best(bookkeeping),
        "the in-process hold: try_hold + release": t_hold,
        "engine.load: read, check and decode the record": t_load - t_hold,
        "  MemoryStorage.get (orjson.loads)": best(lambda: storage.get(key)),
        "  codec decode": best(lambda: codec.decode(record["data"])),
        "engine.finish of a changed session: encode, compare, write": best(load_change_finish) - t_load,
        "  Format.record: codec encode + change check + record": best(lambda: engine.format.record(key, changed, handle)),
        "    codec encode": best(lambda: codec.encode(changed)),
        "  MemoryStorage.set: checked JSON + a right-sized copy": best(lambda: storage.set(key, record)),
        "    orjson.dumps alone (unchecked)": best(lambda: orjson.dumps(record)),
    }


def parts_table(results: dict[str, dict[str, float]], bare_us: float, loops: int) -> None:
    telebot_share = results["inject-only:counter"]["us"] - bare_us
    rows: list[list[object]] = []
    for session in SESSIONS:
        extra = results[f"memory:{session}"]["us"] - bare_us
        pieces = parts(session, loops)
        hooks = pieces.pop("hooks")
        rows.append([f"memory, {session}: cost over bare dispatch, in the bot", extra])
        rows.append(["  telebot's share (inject-only middleware - bare)", telebot_share])
        rows.append(["  telesession's pre_process + post_process, in telebot's per-update call", hooks])
        rows += [[f"    {name}", us] for name, us in pieces.items()]
        steps = sum(us for name, us in pieces.items() if not name.startswith(" "))
        rows.append(["    the rest: the hooks' own code (frame, setattr, data), and the steps above", hooks - steps])
        rows.append(["    costing more in the bot (200 records, fresh objects) than alone on one warm record", "-"])
        rows.append(["  residual: the hooks inside a running bot, beyond their cost in telebot's call alone", extra - telebot_share - hooks])
    table(["where the memory-storage cost goes (steps timed alone, best of 9; indented: parts of the step above)", "us/update"], rows)


def profile(ctx: Context, name: str, top: int = 25) -> None:
    """cProfile one sync configuration (``bare``, ``KIND:SESSION[:param]``, ``KIND:lazy[:touched]``) over a pass; print the top functions."""
    n_memory, n_io, _ = counts(ctx.quick)
    bot, _storage = build(ctx, name)
    n = updates_for(name, n_memory, n_io) if name != "bare" else n_memory
    run_updates(bot, updates_round_robin(CHATS * 2, CHATS))
    updates = replay(n)
    profiler = cProfile.Profile()
    profiler.enable()
    run_updates(bot, updates)
    profiler.disable()
    header(f"profile of {name}: {n} updates (cProfile inflates Python-heavy code; read the shares, not the times)")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main(argv: Sequence[str] | None = None, run_fn: Callable[[Context], None] = run) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", metavar="KIND:SESSION", help="profile one configuration instead, e.g. memory:cart, memory:lazy or bare")
    args = parser.parse_args(argv)
    with context(args.quick) as ctx:
        if args.profile:
            profile(ctx, args.profile)
        else:
            run_fn(ctx)


if __name__ == "__main__":
    main()
