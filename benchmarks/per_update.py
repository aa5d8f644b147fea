"""Question 1: what does a session cost per update, through a real TeleBot?

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

The 200 parsed updates (one per chat) are replayed for every pass, as a live bot holds only
its current batch. Each configuration is built once and warmed up (every chat already has a
stored session). A round runs bare, configuration, bare for every configuration, in an order
rotated each round; a configuration's ratio in a round is its time over the mean of the two
bare runs around it. Tables show medians over the rounds. Memory runs 20,000 updates per
sample; file, SQLite and Redis 2,000 (their cost is I/O, flat per update), as the ``updates``
column shows.

Reference rows, a class middleware that only hands the handler a ready object, show
telebot's own share of any session middleware; a second table splits the memory-storage cost:
telesession's hooks inside telebot's per-update call, and their parts timed alone.

Standalone: ``python benchmarks/per_update.py [--quick] [--profile memory:cart]``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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
from telebot.handler_backends import BaseMiddleware

from telesession import MemoryStorage, SessionMiddleware, SessionStorage
from telesession.codec import codec_for

CHATS = 200
BATCH = 100
SESSIONS: dict[str, type] = {"counter": Counter, "cart": Cart}


@dataclass
class Setup:
    name: str
    bot: TeleBot
    updates: list[types.Update]
    storage: SessionStorage | None


def bare_bot() -> TeleBot:
    bot = new_bot()

    @bot.message_handler()
    def handle(message: types.Message) -> None:
        message.text  # noqa: B018 - touch the message, as a real handler would

    return bot


def handler_for(bot: TeleBot, session: str, param: bool) -> None:
    """Register the benchmark's handler: it changes one int field of the session."""
    field = "count" if session == "counter" else "visits"
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


def parts(session: str, loops: int) -> dict[str, float]:
    """Microseconds of the pieces of a memory-storage update, each timed alone (best of 5 loops).

    "hooks": telesession's pre_process + post_process as telebot calls them, in its own
    per-update call (``_run_middlewares_and_handler``, the frame the locks anchor to), minus
    the same call with the inject-only middleware; no batching around it.
    """
    cls = SESSIONS[session]
    codec = codec_for(cls)
    storage = MemoryStorage()
    value = codec.encode(cls())
    obj = codec.decode(value)
    encoded = codec.encode(obj)  # equal to value, not the same object: == compares every field
    record = {"data": value, "schema": 0, "saved_at": time.time()}
    storage.set("k", record)
    messages = [u.message for u in updates_round_robin(CHATS, CHATS)]

    def dispatch(middleware: BaseMiddleware) -> Callable[[], None]:
        bot = new_bot()
        handler_for(bot, session, param=False)

        def one_pass() -> None:
            for message in messages:
                bot._run_middlewares_and_handler(message, bot.message_handlers, [middleware], "message")

        return one_pass

    def best(fn: Callable[[], object], n: int = loops) -> float:
        return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6

    with_session = dispatch(SessionMiddleware(initial=cls, storage=MemoryStorage()))
    without = dispatch(InjectOnly(cls()))
    with_session()
    rounds = max(loops // CHATS, 1)
    return {
        "hooks": (best(with_session, rounds) - best(without, rounds)) / CHATS,
        "codec decode": best(lambda: codec.decode(value)),
        "codec encode": best(lambda: codec.encode(obj)),
        "MemoryStorage get (orjson.loads)": best(lambda: storage.get("k")),
        "MemoryStorage set (orjson.dumps)": best(lambda: storage.set("k", record)),
        "dirty check (encoded values == stored values)": best(lambda: encoded == value),
    }


def run_updates(bot: TeleBot, updates: Sequence[types.Update]) -> None:
    for batch in batches(updates, BATCH):
        bot.process_new_updates(list(batch))


def sample(bot: TeleBot, updates: list[types.Update]) -> float:
    """Microseconds per update for one pass; drops the session references the pass left on the messages."""
    seconds = timed(lambda: run_updates(bot, updates))
    for update in updates:
        update.message.__dict__.pop("session", None)
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


def run(ctx: Context) -> None:
    header("1. Per-update cost through a real TeleBot (threaded=False, process_new_updates, batches of 100, 200 chats)")
    n_memory, n_io, rounds = counts(ctx.quick)
    kinds = ctx.storages.available()
    ctx.storages.note_skipped()
    updates = {n: replay(n) for n in {n_memory, n_io}}

    setups = [Setup(f"inject-only:counter{':param' * param}", inject_only_bot(param), updates[n_memory], None) for param in (False, True)]
    for kind in kinds:
        for session in SESSIONS:
            for param in (False, True) if kind == "memory" else (False,):
                storage = ctx.storages.make(kind)
                n = n_memory if kind == "memory" else n_io
                bot = session_bot(storage, session, param)
                run_updates(bot, updates_round_robin(CHATS * 2, CHATS))  # every chat has a stored session
                setups.append(Setup(f"{kind}:{session}{':param' * param}", bot, updates[n], storage))
    bare = bare_bot()
    run_updates(bare, updates[n_io])

    times: dict[str, list[float]] = {s.name: [] for s in setups}
    ratios: dict[str, list[float]] = {s.name: [] for s in setups}
    bare_times: dict[int, list[float]] = {len(u): [] for u in updates.values()}
    for r in range(rounds):
        shift = r % len(setups)
        for setup in setups[shift:] + setups[:shift]:
            before = sample(bare, setup.updates)
            t = sample(setup.bot, setup.updates)
            after = sample(bare, setup.updates)
            bare_times[len(setup.updates)] += [before, after]
            times[setup.name].append(t)
            ratios[setup.name].append(t / ((before + after) / 2))
        print(f"  round {r + 1}/{rounds} done", flush=True)

    bare_us = median(bare_times[n_memory])
    rows: list[list[object]] = [["bare dispatch (no session middleware)", "-", "-", n_memory, bare_us, "+0", "1.00x"]]
    results: dict[str, dict[str, float]] = {}
    for setup in setups:
        kind, session, *param = setup.name.split(":")
        us = median(times[setup.name])
        x = median(ratios[setup.name])
        local_bare = median(bare_times[len(setup.updates)])
        results[setup.name] = {"us": us, "ratio": x, "bare_us": local_bare}
        label = "telebot class middleware that only injects a session" if kind == "inject-only" else f"SessionMiddleware + {kind}"
        handler = "(message, session)" if param else "message.session"
        rows.append([label, "-" if kind == "inject-only" else session, handler, len(setup.updates), us, f"+{us - local_bare:.1f}", ratio(x)])
    table(
        ["configuration", "session", "handler reads", "updates", "us/update", "vs bare us", "x bare"],
        rows,
        title=f"median of {rounds} interleaved rounds; x bare = median of per-round ratios to the bare runs around it",
    )
    for setup in setups:
        if setup.storage is not None:
            setup.storage.close()
    ctx.results["per_update"] = results

    if "memory:counter" in results:
        telebot_share = results["inject-only:counter"]["us"] - bare_us
        rows = []
        for session in SESSIONS:
            extra = results[f"memory:{session}"]["us"] - bare_us
            pieces = parts(session, 2_000 if ctx.quick else 20_000)
            rows.append([f"memory, {session}: cost over bare dispatch, in the bot", extra])
            rows.append(["  telebot's share (inject-only middleware - bare)", telebot_share])
            hooks = pieces.pop("hooks")
            rows.append(["  telesession's pre_process + post_process, in telebot's per-update call", hooks])
            rows += [[f"    {name}", us] for name, us in pieces.items()]
            rows.append(["    the rest: locks, key, bookkeeping, and the parts above costing more in", hooks - sum(pieces.values())])
            rows.append(["    the bot (200 records parsed fresh each update) than timed alone on one warm record", "-"])
            rows.append(["  residual: the hooks inside a running bot, beyond their cost timed alone", extra - telebot_share - hooks])
        table(["where the memory-storage cost goes (parts timed alone, best of 5)", "us/update"], rows)


def profile(ctx: Context, name: str, top: int = 25) -> None:
    """cProfile one configuration (``kind:session``, ``kind:session:param``, or ``bare``) over a pass of updates; print the top functions."""
    n_memory, n_io, _ = counts(ctx.quick)
    if name == "bare":
        bot, n = bare_bot(), n_memory
    else:
        kind, session, *param = name.split(":")
        bot = session_bot(ctx.storages.make(kind), session, bool(param))
        n = n_memory if kind == "memory" else n_io
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
    parser.add_argument("--profile", metavar="KIND:SESSION", help="profile one configuration instead, e.g. memory:cart or bare")
    args = parser.parse_args(argv)
    with context(args.quick) as ctx:
        if args.profile:
            profile(ctx, args.profile)
        else:
            run_fn(ctx)


if __name__ == "__main__":
    main()
