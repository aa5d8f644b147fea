"""Question 5: do concurrent updates of one chat lose increments?

800 message updates, 200 for each of 4 private chats (the user is the chat), fed two ways:

- "threads" (webhook-like): 8 threads each call ``bot.process_new_updates([update])`` 100
  times, one update per call, on one shared ``TeleBot(threaded=False)``, all released at once
  by a barrier; thread t's j-th update goes to chat ``j % 4``, so each chat gets 25 updates
  from every thread. Wall = barrier to the 800th finished update (a call returns early for an
  update that waits for its chat: telesession runs it later on a thread of its own).
- "pool" (polling-like): one caller passes the 800 updates (update i to chat ``i % 4``) in
  batches of 100 to a ``TeleBot(threaded=True, num_threads=8)``; a last class middleware
  counts finished updates (its post_process runs after the session's save). Wall = first
  batch to the 800th finished update.

The handler is a read-modify-write that lets other threads run in between: read the count,
``time.sleep(0.0005)``, write count + 1.

- telesession: ``SessionMiddleware(initial=Counter, storage=...)`` on each storage; the
  handler does ``n = session.count; sleep; session.count = n + 1``.
- telebot's own state data (the peers): ``with bot.retrieve_data(user_id, chat_id) as data:
  n = data.get("count", 0); sleep; data["count"] = n + 1`` on StateMemoryStorage,
  StatePickleStorage (file in a temp dir) and StateRedisStorage (the private redis-server);
  ``set_state`` is called for every chat first, as telebot's save needs a state to exist.

Lost = 800 - the sum of the final stored counts. Every configuration runs a few times with
fresh storage, interleaved; all runs are shown.

Standalone: ``python benchmarks/races.py [--quick]``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from _common import Context, Counter, context, header, median, message_update, table
from telebot import TeleBot, types
from telebot.handler_backends import BaseMiddleware
from telebot.storage import StateMemoryStorage, StatePickleStorage, StateRedisStorage

from telesession import SessionMiddleware, SessionStorage

THREADS = 8
PER_THREAD = 100
CHATS = 4
FIRST_CHAT = 5000
PAUSE = 0.0005


@dataclass
class Outcome:
    lost: int
    wall: float
    handled: int
    errors: int
    per_chat: list[int] = field(default_factory=list)


class Tally:
    """Handler calls and exceptions, counted across threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handled = 0
        self.errors = 0

    def run(self, body: Callable[[], None]) -> None:
        try:
            body()
        except Exception:
            with self.lock:
                self.errors += 1
        with self.lock:
            self.handled += 1


class Done(BaseMiddleware):
    """Counts finished updates (its post_process runs after every middleware registered before it)."""

    update_types = ["message"]

    def __init__(self, total: int):
        super().__init__()  # type: ignore[no-untyped-call]
        self.total = total
        self.count = 0
        self.lock = threading.Lock()
        self.all_done = threading.Event()

    def pre_process(self, message: types.Message, data: dict[str, Any]) -> None:
        pass

    def post_process(self, message: types.Message, data: dict[str, Any], exception: BaseException | None) -> None:
        with self.lock:
            self.count += 1
            if self.count == self.total:
                self.all_done.set()


def send_threads(bot: TeleBot) -> float:
    """Webhook-like: 8 threads, 100 single-update calls each, released by a barrier; returns when they were."""
    barrier = threading.Barrier(THREADS + 1)

    def worker(t: int) -> None:
        updates = [message_update(t * PER_THREAD + j + 1, FIRST_CHAT + j % CHATS) for j in range(PER_THREAD)]
        barrier.wait()
        for update in updates:
            bot.process_new_updates([update])

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return start


def send_pool(bot: TeleBot) -> float:
    """Polling-like: the 800 updates in batches of 100 to a threaded bot with 8 workers; returns when it began."""
    total = THREADS * PER_THREAD
    updates = [message_update(i + 1, FIRST_CHAT + i % CHATS) for i in range(total)]
    start = time.perf_counter()
    for i in range(0, total, 100):
        bot.process_new_updates(updates[i : i + 100])
    return start


def new_race_bot(mode: str, **kwargs: Any) -> TeleBot:
    if mode == "pool":
        return TeleBot("123:TEST", threaded=True, num_threads=THREADS, use_class_middlewares=True, **kwargs)
    return TeleBot("123:TEST", threaded=False, use_class_middlewares=True, **kwargs)


def hammer(bot: TeleBot, mode: str) -> float:
    """Send the 800 updates the way ``mode`` says; seconds until all finished (a Done middleware must
    be the bot's last: a webhook-like call returns early for an update parked behind its chat)."""
    done = next(m for m in bot.middlewares or [] if isinstance(m, Done))
    start = send_pool(bot) if mode == "pool" else send_threads(bot)
    finished = done.all_done.wait(timeout=300)
    wall = time.perf_counter() - start
    if mode == "pool":
        bot.stop_bot()  # type: ignore[no-untyped-call]  # joins the workers
    if not finished:
        print(f"  warning: only {done.count} of {THREADS * PER_THREAD} updates finished within 300 s")
    return wall


def telesession_run(storage: SessionStorage, mode: str) -> Outcome:
    bot = new_race_bot(mode)
    bot.setup_middleware(SessionMiddleware(initial=Counter, storage=storage))
    bot.setup_middleware(Done(THREADS * PER_THREAD))
    tally = Tally()

    @bot.message_handler()
    def increment(message: types.Message, session: Counter) -> None:
        def body() -> None:
            n = session.count
            time.sleep(PAUSE)
            session.count = n + 1

        tally.run(body)

    wall = hammer(bot, mode)
    per_chat = []
    for chat in range(FIRST_CHAT, FIRST_CHAT + CHATS):
        record = storage.get(str(chat))
        per_chat.append(0 if record is None else int(record["data"]["count"]))
    storage.close()
    return Outcome(THREADS * PER_THREAD - sum(per_chat), wall, tally.handled, tally.errors, per_chat)


def telebot_run(state_storage: Any, mode: str) -> Outcome:
    bot = new_race_bot(mode, state_storage=state_storage)
    bot.setup_middleware(Done(THREADS * PER_THREAD))
    tally = Tally()

    @bot.message_handler()
    def increment(message: types.Message) -> None:
        def body() -> None:
            context: Any = bot.retrieve_data(message.chat.id, message.chat.id)  # private chat: the user is the chat
            with context as data:
                n = data.get("count", 0)
                time.sleep(PAUSE)
                data["count"] = n + 1

        tally.run(body)

    for chat in range(FIRST_CHAT, FIRST_CHAT + CHATS):
        bot.set_state(chat, "counting", chat)
    wall = hammer(bot, mode)
    per_chat = [
        int(state_storage.get_data(chat_id=chat, user_id=chat, bot_id=bot.bot_id).get("count", 0))
        for chat in range(FIRST_CHAT, FIRST_CHAT + CHATS)
    ]
    return Outcome(THREADS * PER_THREAD - sum(per_chat), wall, tally.handled, tally.errors, per_chat)


MODES = {
    "threads": f"{THREADS} threads each calling process_new_updates([update]) {PER_THREAD} times on one threaded=False bot (webhook-like)",
    "pool": f"one caller, batches of 100, to a threaded=True bot with {THREADS} workers (polling-like)",
}


def run(ctx: Context) -> None:
    header(f"5. Races: {THREADS * PER_THREAD} read-modify-write increments on {CHATS} chats, {THREADS} at a time")
    runs = 1 if ctx.quick else 3
    ctx.storages.note_skipped()
    configs: dict[str, Callable[[int, str], Outcome]] = {}

    def ours(kind: str) -> Callable[[int, str], Outcome]:
        return lambda i, mode: telesession_run(ctx.storages.make(kind), mode)

    for kind in ctx.storages.available():
        configs[f"telesession {kind}"] = ours(kind)
    configs["telebot StateMemoryStorage"] = lambda i, mode: telebot_run(StateMemoryStorage(), mode)
    configs["telebot StatePickleStorage"] = lambda i, mode: telebot_run(
        StatePickleStorage(file_path=str(ctx.root / "races" / f"pickle-{mode}-{i}" / "states.pkl")), mode
    )
    if ctx.storages.redis_url is not None:
        url = ctx.storages.redis_url
        configs["telebot StateRedisStorage"] = lambda i, mode: telebot_run(
            StateRedisStorage(redis_url=url, prefix=f"telebot-{mode}-{i}"), mode
        )
    else:
        print("  (skipped telebot StateRedisStorage: no redis-server)")

    losses: dict[str, list[int]] = {}
    for mode, how in MODES.items():
        outcomes: dict[str, list[Outcome]] = {name: [] for name in configs}
        names = list(configs)
        for r in range(runs):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                outcomes[name].append(configs[name](r, mode))
        rows = []
        for name, results in outcomes.items():
            rows.append([
                name,
                ", ".join(str(o.lost) for o in results),
                f"{100 * median([o.lost for o in results]) / (THREADS * PER_THREAD):.0f}%",
                median([o.wall for o in results]) * 1000,
                ", ".join(str(o.handled) for o in results),
                ", ".join(str(o.errors) for o in results),
                " ".join(str(c) for c in results[-1].per_chat),
            ])  # fmt: skip
            losses[f"{name} ({mode})"] = [o.lost for o in results]
        table(
            ["storage", "lost per run", "lost (median)", "wall ms (median)", "handler calls", "handler errors", "final counts (last run)"],
            rows,
            title=f"{mode}: {how}; {runs} run(s), fresh storage each; expected final count per chat: {THREADS * PER_THREAD // CHATS}",
        )
    ctx.results["races"] = losses


if __name__ == "__main__":
    with context("--quick" in sys.argv) as c:
        run(c)
