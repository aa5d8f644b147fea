"""Question 6: does a busy chat stall the others?

Three scenarios through a real ``TeleBot(threaded=True, use_class_middlewares=True)``, its
worker pool fed real ``Update.de_json`` updates through ``process_new_updates`` as polling
delivers them. Every handler touches its chat's session (reads and increments a counter; bare
telebot, with no session middleware, increments a plain dict) and notes when it ends. An
update's latency runs from the ``process_new_updates`` call of its batch to the end of its
handler, where a real handler has sent its reply (telesession saves the session after it, in
``post_process``). Completions are counted under a Condition, never found by sleeping. Every
run checks that each update ran its handler exactly once and, with telesession, that every
chat's stored counter grew by exactly its number of updates: a lost or doubled update makes
the figures meaningless, and is printed loudly (and fails the targets).

- Slow chat (4 workers): 4,000 updates round-robin over 40 chats, and a 41st chat whose 20
  updates each take 50 ms (``time.sleep``, as a Bot API call would), one every 200 updates of
  the others; all in batches of 100, handed over at once as a backlog. Measured: the other
  chats' completion time (first batch to their last handler) and their p50/p99 latency, with
  and without the slow chat, bare telebot against telesession on each storage. The targets:
  with the slow chat, the other chats finish within 1.3x of their time without it, and never
  later than bare telebot's with the same slow chat.
- Album (4 workers): 20 chats send one update each every 10 ms for 2 s (2,000 a second); 0.5 s
  in, 10 updates of one more chat arrive in one batch with them, each handler taking 100 ms.
  Measured: the 20 chats' p50/p99 latency, bare telebot (with and without the album) against
  telesession with the album.
- Blocked chat (2 workers): a chat whose handler waits on an Event (two of its updates), then
  1,000 updates of 20 other chats: do those complete while it waits, and how fast. Telesession
  before parking stalled here for good (one worker in the handler, the other waiting for its
  key); bare telebot stalls as well, both workers in the handler.

Each configuration has its own bot and storage, warmed up (every chat has a stored session).
Runs are interleaved in rounds, in an order rotated each round; tables show medians of the
rounds, and ratios are medians of per-round ratios.

``--quick``: the slow chat and the album on MemoryStorage only (3 rounds; the album 1 s, once);
the blocked chat on every storage.

Standalone: ``python benchmarks/contention.py [--quick]``.
"""

from __future__ import annotations

import argparse
import collections
import gc
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from _common import Context, Counter, batches, context, header, median, message_update, percentile, ratio, table
from telebot import TeleBot, types

from telesession import SessionMiddleware, SessionStorage, per_chat

BATCH = 100

# Slow chat
SLOW_WORKERS = 4
OTHER_CHATS = 40
OTHERS = 4_000
SLOW_CHAT = 900
SLOW_UPDATES = 20
SLOW_SECONDS = 0.05

# Album
STEADY_CHATS = 20
TICK = 0.010  # one update from each steady chat per tick
ALBUM_CHAT = 901
ALBUM_UPDATES = 10
ALBUM_SECONDS = 0.1
ALBUM_AT = 0.5  # seconds into the stream

# Blocked chat
BLOCKED_WORKERS = 2
BLOCKED_CHAT = 902
BLOCKED_UPDATES = 2
BLOCKED_OTHERS = 1_000

FIRST_CHAT = 1000  # the ordinary chats: 1000, 1001, ...
WAIT = 120.0  # seconds a run may take before it counts as stuck


# -- a bot under test -----------------------------------------------------------------------------


class Finished:
    """Which updates finished their handler, when, and how often; waited on under a Condition."""

    def __init__(self, size: int) -> None:
        self.ends = [0.0] * size  # perf_counter at the end of each update's handler, by update_id
        self.runs = bytearray(size)  # how many times each update's handler ran
        self.ordinary = 0  # finished updates of ordinary chats
        self.special = 0  # finished updates of the slow, album or blocked chat
        self.cond = threading.Condition()
        self._want = (size, size)  # what the waiter waits for: notified only then, not at every update

    def finish(self, update_id: int, special: bool) -> None:
        end = time.perf_counter()
        with self.cond:
            self.ends[update_id] = end
            self.runs[update_id] = min(self.runs[update_id] + 1, 255)
            if special:
                self.special += 1
            else:
                self.ordinary += 1
            if self.ordinary >= self._want[0] and self.special >= self._want[1]:
                self.cond.notify_all()

    def wait(self, ordinary: int, special: int, timeout: float) -> bool:
        """Wait until at least that many of each finished; ``False`` when ``timeout`` passed first."""
        with self.cond:
            self._want = (ordinary, special)
            return self.cond.wait_for(lambda: self.ordinary >= ordinary and self.special >= special, timeout)


class Subject:
    """A threaded bot whose handler increments its chat's counter: bare telebot, or with telesession on a storage."""

    def __init__(self, name: str, workers: int, storage: SessionStorage | None = None) -> None:
        self.name = name
        self.storage = storage
        self.bot = TeleBot("123:TEST", threaded=True, num_threads=workers, use_class_middlewares=True)
        self.sessions: SessionMiddleware[Counter] | None = None
        self.finished = Finished(1)
        self.special: dict[int, Callable[[], object]] = {}  # chat id -> what its handler does first
        self.plain: dict[int, int] = {}  # bare telebot's counters (racy, as telebot's threads are: not checked)
        self.broken: str | None = None  # why this bot can't be measured any further
        special, finished, plain = self.special, lambda: self.finished, self.plain

        if storage is None:

            @self.bot.message_handler()
            def bare(message: types.Message) -> None:
                chat = message.chat.id
                work = special.get(chat)
                if work is not None:
                    work()
                plain[chat] = plain.get(chat, 0) + 1
                finished().finish(message.message_id, work is not None)

        else:
            self.sessions = SessionMiddleware(initial=Counter, storage=storage)
            self.bot.setup_middleware(self.sessions)

            @self.bot.message_handler()
            def with_session(message: types.Message) -> None:
                work = special.get(message.chat.id)
                if work is not None:
                    work()
                message.session.count += 1  # type: ignore[attr-defined]
                finished().finish(message.message_id, work is not None)

    def counts(self, chats: Sequence[int]) -> dict[int, int] | None:
        """Every chat's stored counter, each read once no update holds it (``None`` for bare telebot)."""
        if self.sessions is None:
            return None
        found = {}
        for chat in chats:
            with self.sessions.edit(per_chat.key(chat)) as session:  # waits for an update still saving it
                found[chat] = session.count
        return found

    def stop(self) -> None:
        """Ask the workers to stop (they notice within 0.5 s); ``join`` waits for them."""
        for worker in self.bot.worker_pool.workers:
            worker.stop()

    def join(self) -> None:
        for worker in self.bot.worker_pool.workers:
            worker.join(timeout=2)
        if self.storage is not None and self.broken is None:
            self.storage.close()


def subjects(ctx: Context, workers: int, kinds: Sequence[str] | None = None) -> list[Subject]:
    """Bare telebot, and telesession on each storage (of ``kinds``, if given) that is available."""
    made = [Subject("bare telebot", workers)]
    for kind in ctx.storages.available(kinds or ctx.storages.KINDS):
        made.append(Subject(f"telesession {kind}", workers, ctx.storages.make(kind)))
    return made


# -- one run --------------------------------------------------------------------------------------


@dataclass
class Run:
    """One run's figures, in milliseconds; ``problems`` says what went wrong (then the figures mean nothing)."""

    done_ms: float = 0.0  # first batch to the ordinary chats' last handler
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    special_done_ms: float = 0.0  # the special chat's last handler, from the call of its first batch
    problems: list[str] = field(default_factory=list)


Plan = list[list[tuple[int, int]]]  # batches of (update_id, chat_id), in the order they are handed over


def play(
    subject: Subject, plan: Plan, at: Sequence[float] | None = None, *, patience: float = WAIT, then: Callable[[], object] | None = None
) -> Run:
    """Hand ``plan``'s batches to the bot (at ``at`` seconds from the start, else all at once) and measure.

    Updates are parsed before the clock starts. Waits up to ``patience`` for the ordinary chats'
    handlers, calls ``then``, waits for every handler, then checks that each ran exactly once
    and that the stored counters grew by the number of updates of their chat.
    """
    run = Run()
    if subject.broken:
        run.problems.append(f"not run: {subject.broken}")
        return run
    updates = [[message_update(uid, chat) for uid, chat in batch] for batch in plan]
    per_chat_count = collections.Counter(chat for batch in plan for _, chat in batch)
    is_special = {chat: chat in subject.special for chat in per_chat_count}
    ordinary = sum(n for chat, n in per_chat_count.items() if not is_special[chat])
    special = sum(per_chat_count.values()) - ordinary
    finished = subject.finished = Finished(max(uid for batch in plan for uid, _ in batch) + 1)
    before = subject.counts(sorted(per_chat_count))
    gc.collect()  # the garbage of parsing and of the last run is not this run's cost

    starts: list[float] = []
    begin = time.perf_counter()
    for i, parsed in enumerate(updates):
        if at is not None:
            delay = begin + at[i] - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        starts.append(time.perf_counter())
        subject.bot.process_new_updates(parsed)

    if not finished.wait(ordinary, 0, patience):
        run.problems.append(f"stalled: {finished.ordinary:,} of {ordinary:,} done after {patience:.0f} s")
    if then is not None:
        then()
    if not finished.wait(ordinary, special, WAIT):
        subject.broken = f"{finished.ordinary + finished.special} of {ordinary + special} updates finished within {WAIT:.0f} s"
        run.problems.append(subject.broken)
        return run

    latencies = []
    special_end = 0.0
    for start, planned in zip(starts, plan):
        for uid, chat in planned:
            if is_special[chat]:
                special_end = max(special_end, finished.ends[uid])
            else:
                latencies.append(finished.ends[uid] - start)
    last = max(finished.ends[uid] for batch in plan for uid, chat in batch if not is_special[chat])
    run.done_ms = (last - starts[0]) * 1e3
    run.p50_ms = percentile(latencies, 50) * 1e3
    run.p99_ms = percentile(latencies, 99) * 1e3
    run.max_ms = max(latencies) * 1e3
    if special:
        first = next(i for i, batch in enumerate(plan) if any(is_special[chat] for _, chat in batch))
        run.special_done_ms = (special_end - starts[first]) * 1e3

    runs = collections.Counter(finished.runs[uid] for batch in plan for uid, _ in batch)
    if runs[0] or len(runs) > 1:
        run.problems.append(f"handlers ran {dict(sorted(runs.items()))} times (times: updates)")
    after = subject.counts(sorted(per_chat_count))
    if before is not None and after is not None:
        wrong = {chat: after[chat] - before[chat] for chat in per_chat_count if after[chat] - before[chat] != per_chat_count[chat]}
        if wrong:
            lost = sum(per_chat_count[chat] - grew for chat, grew in wrong.items())
            run.problems.append(f"{lost} increments lost ({len(wrong)} chats' counters grew by the wrong amount)")
    return run


def report_problems(scenario: str, name: str, run: Run, problems: list[str]) -> None:
    for problem in run.problems:
        line = f"{scenario}, {name}: {problem}"
        problems.append(line)
        print(f"  !!! {line}", flush=True)


# -- the scenarios --------------------------------------------------------------------------------


def slow_plan(slow: bool, others: int = OTHERS) -> Plan:
    """``others`` updates round-robin over the ordinary chats; with ``slow``, the slow chat's 20 spread among them."""
    stream = []
    every = others // SLOW_UPDATES
    uid = 0
    for i in range(others):
        if slow and i % every == every // 2:
            uid += 1
            stream.append((uid, SLOW_CHAT))
        uid += 1
        stream.append((uid, FIRST_CHAT + i % OTHER_CHATS))
    return [list(b) for b in batches(stream, BATCH)]


def album_plan(album: bool, seconds: float) -> tuple[Plan, list[float]]:
    """One batch per tick (one update of each steady chat); with ``album``, its 10 updates join the batch at ``ALBUM_AT``."""
    plan: Plan = []
    uid = 0
    ticks = round(seconds / TICK)
    for k in range(ticks):
        batch = []
        if album and k == round(ALBUM_AT / TICK):
            for _ in range(ALBUM_UPDATES):
                uid += 1
                batch.append((uid, ALBUM_CHAT))
        for c in range(STEADY_CHATS):
            uid += 1
            batch.append((uid, FIRST_CHAT + c))
        plan.append(batch)
    return plan, [k * TICK for k in range(ticks)]


def blocked_plan() -> Plan:
    plan: Plan = [[(i + 1, BLOCKED_CHAT) for i in range(BLOCKED_UPDATES)]]
    stream = [(BLOCKED_UPDATES + i + 1, FIRST_CHAT + i % STEADY_CHATS) for i in range(BLOCKED_OTHERS)]
    return plan + [list(b) for b in batches(stream, BATCH)]


def warm_up(subject: Subject, chats: Sequence[int]) -> None:
    """One update of every chat: sessions exist, threads and code paths are warm."""
    run = play(subject, [[(i + 1, chat) for i, chat in enumerate(chats)]])
    if run.problems:
        print(f"  !!! warm-up of {subject.name}: {'; '.join(run.problems)}", flush=True)


def interleave(cases: dict[str, Callable[[], Run]], rounds: int, label: str) -> dict[str, list[Run]]:
    """Every case once per round, the order rotated each round."""
    runs: dict[str, list[Run]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(cases[name]())
        print(f"  {label}: round {r + 1}/{rounds} done", flush=True)
    return runs


def per_round(runs: list[Run], against: list[Run], figure: str) -> float:
    """Median over rounds of ``figure`` in ``runs`` over the same figure in ``against``."""
    return median([getattr(a, figure) / getattr(b, figure) for a, b in zip(runs, against) if getattr(b, figure) > 0])


def med(runs: list[Run], figure: str) -> float:
    return median([getattr(run, figure) for run in runs])


def slow_chat(ctx: Context, subs: list[Subject], rounds: int, problems: list[str]) -> dict[str, Any]:
    others_only, with_slow = slow_plan(False), slow_plan(True)
    cases: dict[str, Callable[[], Run]] = {}
    for s in subs:
        s.special.clear()
        s.special[SLOW_CHAT] = lambda: time.sleep(SLOW_SECONDS)
        cases[f"{s.name}|no"] = lambda s=s: play(s, others_only)  # type: ignore[misc]
        cases[f"{s.name}|slow"] = lambda s=s: play(s, with_slow)  # type: ignore[misc]
    runs = interleave(cases, rounds, "slow chat")

    bare_slow = runs["bare telebot|slow"]
    rows: list[list[object]] = []
    results: dict[str, Any] = {}
    for s in subs:
        without, slow = runs[f"{s.name}|no"], runs[f"{s.name}|slow"]
        for run in without + slow:
            report_problems("slow chat", s.name, run, problems)
        vs_no = per_round(slow, without, "done_ms")
        vs_bare = per_round(slow, bare_slow, "done_ms")
        rows.append([s.name, "-", med(without, "done_ms"), med(without, "p50_ms"), med(without, "p99_ms"), "-", "-", "-"])
        rows.append([
            "", f"{SLOW_UPDATES} x {SLOW_SECONDS * 1e3:.0f} ms", med(slow, "done_ms"), med(slow, "p50_ms"), med(slow, "p99_ms"),
            med(slow, "special_done_ms"), ratio(vs_no), ratio(vs_bare),
        ])  # fmt: skip
        results[s.name] = {
            "vs_no_slow": vs_no, "vs_bare_slow": vs_bare, "done_ms": med(slow, "done_ms"), "no_slow_ms": med(without, "done_ms"),
            "bare_slow_ms": med(bare_slow, "done_ms"), "ok": not any(run.problems for run in without + slow),
        }  # fmt: skip
    table(
        ["configuration", "slow chat", "others done ms", "p50 ms", "p99 ms", "slow chat done ms", "x no slow chat", "x bare, slow chat"],
        rows,
        title=(
            f"slow chat: {OTHERS:,} updates over {OTHER_CHATS} chats in batches of {BATCH}, {SLOW_WORKERS} workers; others = "
            f"those {OTHER_CHATS} chats; median of {rounds} rounds; ratios: of the others' completion time, per round"
        ),
    )
    return results


def album(ctx: Context, subs: list[Subject], rounds: int, seconds: float, problems: list[str]) -> dict[str, Any]:
    steady, at = album_plan(False, seconds)
    with_album, at_album = album_plan(True, seconds)
    cases: dict[str, Callable[[], Run]] = {}
    for s in subs:
        s.special.clear()
        s.special[ALBUM_CHAT] = lambda: time.sleep(ALBUM_SECONDS)
        cases[f"{s.name}|no"] = lambda s=s: play(s, steady, at)  # type: ignore[misc]
        cases[f"{s.name}|album"] = lambda s=s: play(s, with_album, at_album)  # type: ignore[misc]
    runs = interleave(cases, rounds, "album")

    bare = runs["bare telebot|album"]
    rows: list[list[object]] = []
    results: dict[str, Any] = {}
    for s in subs:
        without, these = runs[f"{s.name}|no"], runs[f"{s.name}|album"]
        for run in without + these:
            report_problems("album", s.name, run, problems)
        vs_no, vs_bare = per_round(these, without, "p99_ms"), per_round(these, bare, "p99_ms")
        rows.append([s.name, "-", med(without, "p50_ms"), med(without, "p99_ms"), med(without, "max_ms"), "-", "-", "-"])
        rows.append([
            "", f"{ALBUM_UPDATES} x {ALBUM_SECONDS * 1e3:.0f} ms", med(these, "p50_ms"), med(these, "p99_ms"),
            med(these, "max_ms"), med(these, "special_done_ms"), ratio(vs_no), ratio(vs_bare),
        ])  # fmt: skip
        results[s.name] = {
            "p99_vs_bare": vs_bare, "p99_vs_no_album": vs_no, "p99_ms": med(these, "p99_ms"), "bare_p99_ms": med(bare, "p99_ms"),
            "no_album_p99_ms": med(without, "p99_ms"), "ok": not any(run.problems for run in without + these),
        }  # fmt: skip
    table(
        ["configuration", "album", "others p50 ms", "p99 ms", "max ms", "album done ms", "p99 x no album", "p99 x bare, album"],
        rows,
        title=(
            f"album: {STEADY_CHATS} chats send an update each every {TICK * 1e3:.0f} ms for {seconds:.0f} s "
            f"({STEADY_CHATS / TICK:,.0f} a second), the album arrives {ALBUM_AT} s in; {SLOW_WORKERS} workers; others = "
            f"the {STEADY_CHATS} chats; median of {rounds} round(s); ratios: of the others' p99 latency, per round"
        ),
    )
    return results


def blocked(ctx: Context, subs: list[Subject], patience: float, problems: list[str]) -> dict[str, Any]:
    rows: list[list[object]] = []
    results: dict[str, Any] = {}
    plan = blocked_plan()
    for s in subs:
        gate = threading.Event()
        s.special.clear()
        s.special[BLOCKED_CHAT] = gate.wait
        run = play(s, plan, patience=patience, then=gate.set)  # the blocked handlers go once the others are done or stalled
        stalled = [p for p in run.problems if p.startswith("stalled")]
        run.problems = [p for p in run.problems if not p.startswith("stalled")]
        report_problems("blocked chat", s.name, run, problems)
        done = not stalled and not run.problems
        figure = f"{run.done_ms:,.0f} ms" if done else (stalled[0] if stalled else "; ".join(run.problems))
        rows.append([s.name, figure, run.p99_ms if done else "-"])
        results[s.name] = {"done": done, "done_ms": run.done_ms if done else None, "figure": figure}
    table(
        ["configuration", f"{BLOCKED_OTHERS:,} other updates done in", "their p99 ms"],
        rows,
        title=(
            f"blocked chat: {BLOCKED_WORKERS} workers; {BLOCKED_UPDATES} updates of a chat whose handler waits on an Event, "
            f"then {BLOCKED_OTHERS:,} updates of {STEADY_CHATS} other chats; the Event is set once they are done, or after {patience:.0f} s"
        ),
    )
    return results


def run(ctx: Context) -> None:
    quick = ctx.quick
    header(f"6. Contention: does a busy chat stall the others? (threaded TeleBot, {SLOW_WORKERS} workers)")
    ctx.storages.note_skipped()
    problems: list[str] = []
    results: dict[str, Any] = {"problems": problems}

    # --quick: memory only for the timed scenarios (the persistent storages take seconds per run)
    subs = subjects(ctx, SLOW_WORKERS, ["memory"] if quick else None)
    if quick:
        print("  (--quick: slow chat and album with MemoryStorage only)")
    ordinary = [FIRST_CHAT + c for c in range(max(OTHER_CHATS, STEADY_CHATS))]
    for s in subs:
        warm_up(s, [*ordinary, SLOW_CHAT, ALBUM_CHAT])
    try:
        results["slow"] = slow_chat(ctx, subs, 3 if quick else 4, problems)
        results["album"] = album(ctx, subs, 1 if quick else 3, 1.0 if quick else 2.0, problems)
    finally:
        for s in subs:
            s.stop()
        for s in subs:
            s.join()

    subs = subjects(ctx, BLOCKED_WORKERS)
    for s in subs:
        warm_up(s, [*ordinary[:STEADY_CHATS], BLOCKED_CHAT])
    try:
        results["blocked"] = blocked(ctx, subs, 1.0 if quick else 3.0, problems)
    finally:
        for s in subs:
            s.stop()
        for s in subs:
            s.join()
    if problems:
        print(f"\n  !!! {len(problems)} run(s) lost, doubled or stalled updates: their figures mean nothing", flush=True)
    ctx.results["contention"] = results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, a shorter album stream")
    args = parser.parse_args(argv)
    with context(args.quick) as ctx:
        run(ctx)


if __name__ == "__main__":
    main()
