"""Run the shop bot against simulated users, check every session, restart, and check again.

    python examples/demo.py

No Telegram needed: the bot (examples/shop_bot.py, unchanged) polls a fake Bot API on
127.0.0.1 while a few dozen users, each in their own thread, count, tap cart buttons (several
taps at once) and fill in the form. Sessions live in a FileStorage in a temporary directory.
The demo then reads every stored session back, stops the bot, starts a new one on the same
directory and shows that the sessions survived. Exits 1 if anything is off.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from anywhere
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # use this checkout's telesession

from shop_bot import PRODUCTS, Form, ShopSession, cart_text, make_bot  # noqa: E402

from telesession import FileStorage  # noqa: E402
from telesession.testing import FakeBotAPI, FakeUser, serve_bot  # noqa: E402

TOKEN = "123456:DEMO"
USERS = 30
NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy"]
TIMEOUT = 10.0


@dataclasses.dataclass
class Plan:
    """What one simulated user will do, and so what their session must hold afterwards."""

    user: FakeUser
    counts: int
    taps: list[str]
    name: str
    age: int

    def expected(self) -> ShopSession:
        cart: dict[str, int] = {}
        for product in self.taps:
            cart[product] = cart.get(product, 0) + 1
        return ShopSession(count=self.counts, cart=cart, form=Form(), name=self.name, age=self.age)


class Transcript:
    """One user's side of the conversation, as lines to print."""

    def __init__(self, who: str) -> None:
        self.who = who
        self.lines: list[str] = []

    def said(self, text: str) -> None:
        self.lines.append(f"  {self.who:>6}: {text}")

    def bot(self, text: str, edited: bool = False) -> None:
        self.lines.append(f"  {'bot':>6}{' (edits)' if edited else ''}: {text}")


def expect(got: str | None, want: str) -> None:
    if got != want:
        raise AssertionError(f"expected {want!r}, got {got!r}")


def converse(api: FakeBotAPI, plan: Plan, log: Transcript) -> None:
    """One user's whole visit; raises AssertionError on any unexpected reply."""
    user = plan.user
    # Several /count at once: the updates of one chat run concurrently on the bot's 4 workers.
    for _ in range(plan.counts):
        user.send("/count")
    log.said(f"/count x{plan.counts}, without waiting")
    for n in range(1, plan.counts + 1):
        expect(user.wait_for_reply(timeout=TIMEOUT).text, f"Count: {n}")
    log.bot(f"Count: 1 ... Count: {plan.counts}")

    menu = user.ask("/shop", timeout=TIMEOUT)
    log.said("/shop")
    log.bot(f"{menu.text}  [{' | '.join(b.text for row in menu.reply_markup.keyboard for b in row)}]")
    for product in plan.taps:  # fast taps, before any edit arrives
        user.press(menu, f"Add {product}")
    log.said(f"taps {', '.join('Add ' + p for p in plan.taps)}")
    for _ in plan.taps:
        last = api.wait_for_edit(menu, timeout=TIMEOUT)
    want = cart_text(plan.expected().cart)
    expect(last.text, want)
    log.bot(want, edited=True)

    for text, want in [
        ("/form", "What is your name?"),
        (plan.name, f"How old are you, {plan.name}?"),
        ("old enough", "Please send your age as a number from 1 to 129."),
        (str(plan.age), f"Name: {plan.name}, age: {plan.age}. Save?"),
    ]:
        log.said(text)
        reply = user.ask(text, timeout=TIMEOUT)
        expect(reply.text, want)
        log.bot(want + ("  [Save | Start over]" if reply.reply_markup else ""))
    user.press(reply, "Save")
    log.said("taps Save")
    expect(api.wait_for_edit(reply, timeout=TIMEOUT).text, f"Saved: {plan.name}, {plan.age}.")
    log.bot(f"Saved: {plan.name}, {plan.age}.", edited=True)


def run_all(api: FakeBotAPI, plans: list[Plan], job: Any) -> list[str]:
    """Run ``job(plan)`` for every plan, each in its own thread; returns the failures."""
    failures: list[str] = []

    def run(plan: Plan) -> None:
        try:
            job(plan)
        except Exception as e:  # AssertionError from the checks, or anything unexpected
            failures.append(f"{plan.user.first_name}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=run, args=(plan,)) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def stored(storage: FileStorage, plan: Plan) -> Any:
    record = storage.get(str(plan.user.id))  # the default key: the chat id
    return None if record is None else record["data"]


def main() -> int:
    rng = random.Random(2024)
    with tempfile.TemporaryDirectory(prefix="telesession-demo-") as tmp, FakeBotAPI() as api:
        directory = Path(tmp) / "sessions"
        plans = [
            Plan(
                user=api.user(first_name=f"{NAMES[i % len(NAMES)]}{'' if i < len(NAMES) else i // len(NAMES) + 1}"),
                counts=rng.randint(2, 6),
                taps=rng.choices(list(PRODUCTS), k=rng.randint(2, 6)),
                name=NAMES[i % len(NAMES)],
                age=rng.randint(18, 90),
            )
            for i in range(USERS)
        ]
        logs = {plan.user.id: Transcript(plan.user.first_name) for plan in plans}

        print(f"Shop bot on a fake Bot API, sessions in a FileStorage at {directory}")
        print(f"{USERS} users at once, each in a thread; the bot polls with 4 worker threads.\n")
        storage = FileStorage(directory)
        started = time.monotonic()
        with serve_bot(api, make_bot(TOKEN, storage, threaded=True, num_threads=4)):
            failures = run_all(api, plans, lambda plan: converse(api, plan, logs[plan.user.id]))
        took = time.monotonic() - started

        for plan in plans[:2]:
            print(f"{plan.user.first_name}'s conversation:")
            print("\n".join(logs[plan.user.id].lines) + "\n")

        updates = sum(p.counts + 1 + len(p.taps) + 5 for p in plans)
        print(f"{updates} updates ({sum(p.counts for p in plans)} /count, {sum(len(p.taps) for p in plans)} "
              f"button taps, {USERS} forms) handled in {took:.1f} s")
        wrong = [p.user.first_name for p in plans if stored(storage, p) != dataclasses.asdict(p.expected())]
        failures += [f"{name}: stored session differs from what they did" for name in wrong]
        print(f"Stored sessions read back: {USERS - len(wrong)} of {USERS} exactly as expected")
        example = plans[0]
        print(f"  e.g. {example.user.first_name}: {stored(storage, example)}")
        storage.close()

        print("\nStopped the bot. A new bot, with a new FileStorage on the same directory:")
        storage = FileStorage(directory)
        with serve_bot(api, make_bot(TOKEN, storage, threaded=True, num_threads=4)):
            def count_again(plan: Plan) -> None:
                expect(plan.user.ask("/count", timeout=TIMEOUT).text, f"Count: {plan.counts + 1}")

            lost = run_all(api, plans, count_again)
        failures += lost
        print(f"  /count continued where it left off for {USERS - len(lost)} of {USERS} users "
              f"(e.g. {example.user.first_name}: Count: {example.counts} -> Count: {example.counts + 1})")
        storage.close()

    if failures:
        print(f"\nFAILED ({len(failures)}):\n  " + "\n  ".join(failures[:20]))
        return 1
    print("\nOK: every session ended exactly as its user's actions say.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
