"""Before and after: the per-update cost of this checkout against an earlier commit, in one run.

    python benchmarks/versus.py [REV] [--quick]

``REV`` defaults to 2e007d4, the last commit before the session engine (issue 10), parking
(issue 11) and the async middleware (issue 14). Its ``telesession`` package is taken out with
``git archive`` into a temp dir. Each round runs two subprocesses, alternately the earlier
package first and this checkout's first; each one times bare dispatch and the same bot with a
``SessionMiddleware`` on ``MemoryStorage`` (the counter and the cart session of ``_common``,
handlers reading ``message.session``), interleaved, and reports microseconds per update over
bare dispatch. Only the public API is used, so any version since 0.1 runs. Printed: the
medians over rounds, and the ratio after/before of the cost over bare dispatch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import Context, context, header, median, ratio, table

BEFORE = "2e007d4"
CHILD_UPDATES = {"full": 20_000, "quick": 5_000}


def child(updates: int, rounds: int) -> None:
    """In a subprocess: time bare dispatch, counter and cart bots; print {name: us over bare} as JSON."""
    import gc

    from _common import Cart, Counter, batches, interleaved, new_bot, per_op_us, updates_round_robin

    from telesession import MemoryStorage, SessionMiddleware

    def bot_for(initial: object | None) -> object:
        bot = new_bot()
        if initial is None:
            bot.message_handler(func=lambda m: True)(lambda m: None)
            return bot
        bot.setup_middleware(SessionMiddleware(initial=initial, storage=MemoryStorage()))

        @bot.message_handler(func=lambda m: True)
        def handle(message: object) -> None:
            session = message.session  # type: ignore[attr-defined]
            if isinstance(session, Counter):
                session.count += 1
            else:
                session.visits += 1

        return bot

    bots = {"bare": bot_for(None), "counter": bot_for(Counter), "cart": bot_for(Cart)}
    work = batches(updates_round_robin(updates, 200), 100)  # the same update objects every time, as per_update.py does

    def case(name: str) -> object:
        def run() -> float:
            return per_op_us(lambda: [bots[name].process_new_updates(list(b)) for b in work], updates)  # type: ignore[attr-defined]
        return run

    for name in bots:  # warm up: every chat's session exists
        case(name)()
    gc.collect()
    gc.freeze()
    samples = interleaved({name: case(name) for name in bots}, rounds)
    bare = median(samples["bare"])
    print(json.dumps({"bare": bare, **{name: median(samples[name]) - bare for name in ("counter", "cart")}}))


def measure(rev: str, quick: bool) -> dict[str, dict[str, float]]:
    """{"before": {...}, "after": {...}}: medians of bare us and us over bare (counter, cart) over rounds."""
    repo = Path(__file__).resolve().parent.parent
    updates = CHILD_UPDATES["quick" if quick else "full"]
    rounds = 3 if quick else 7
    results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="telesession-versus-") as tmp:
        archive = subprocess.run(["git", "-C", str(repo), "archive", rev, "telesession"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        packages = {"before": tmp, "after": str(repo)}
        for r in range(rounds):
            for name in (["before", "after"] if r % 2 == 0 else ["after", "before"]):
                env = {**os.environ, "BENCH_TELESESSION": packages[name]}
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(updates)], env=env, capture_output=True, text=True, check=True
                ).stdout
                results[name].append(json.loads(out.strip().splitlines()[-1]))
            print(f"  round {r + 1}/{rounds} done", flush=True)
    return {name: {k: median([s[k] for s in samples]) for k in ("bare", "counter", "cart")} for name, samples in results.items()}


def run(ctx: Context, rev: str = BEFORE) -> None:
    header(f"Before and after: this checkout against {rev}, per update on MemoryStorage")
    try:
        m = measure(rev, ctx.quick)
    except subprocess.CalledProcessError as e:
        print(f"  skipped: {' '.join(map(str, e.cmd[:4]))} failed ({(e.stderr or b'').strip()[-200:]!r}); is {rev} in this clone?")
        return
    rows = []
    for name, label in (("before", f"before ({rev})"), ("after", "after (this checkout)")):
        x = m[name]
        rows.append([label, x["bare"], x["counter"], ratio((x["bare"] + x["counter"]) / x["bare"]), x["cart"], ratio((x["bare"] + x["cart"]) / x["bare"])])
    growth = {k: m["after"][k] / m["before"][k] for k in ("counter", "cart")}
    rows.append(["after / before, cost over bare", "", ratio(growth["counter"]), "", ratio(growth["cart"]), ""])
    updates = CHILD_UPDATES["quick" if ctx.quick else "full"]
    table(
        ["telesession", "bare us", "counter: us over bare", "x bare", "cart: us over bare", "x bare"],
        rows,
        title=f"message.session; {updates:,} updates over 200 chats per sample, each sample a fresh pair of processes; medians",
    )
    ctx.results["versus"] = {"rev": rev, **m, "growth": growth}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", nargs="?", default=BEFORE)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, rounds=3)
        return
    with context(args.quick) as ctx:
        run(ctx, args.rev)


if __name__ == "__main__":
    main()
