"""Run telesession's benchmarks and check the results against the targets.

    python benchmarks/run.py                 # everything, a few minutes
    python benchmarks/run.py --quick         # smaller counts and sizes, under a minute
    python benchmarks/run.py --only races,codec
    python benchmarks/run.py --only per_update,contention
    python benchmarks/run.py --profile memory:cart   # cProfile the per-update loop of one configuration

One temp dir and one private redis-server (127.0.0.1, no persistence) serve every benchmark
and are removed at exit. Each benchmark is a module of this folder that answers one question
(its docstring says how it measures); every comparison is a ratio of medians measured in the
same run, in interleaved rounds, because the machine is small and shared.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import codec_cost
import contention
import durable_write
import memory_use
import per_update
import races
import scale
import versus
from _common import Context, context, header, table

BENCHMARKS: dict[str, Callable[[Context], None]] = {
    "per_update": per_update.run,
    "codec": codec_cost.run,
    "scale": scale.run,
    "durable": durable_write.run,
    "races": races.run,
    "memory": memory_use.run,
    "contention": contention.run,
    "versus": versus.run,
}


def targets(ctx: Context) -> list[list[object]]:
    """[target, figure, verdict] for every target whose benchmark ran."""
    r: dict[str, Any] = ctx.results
    rows: list[list[object]] = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    if "per_update" in r:
        pu = r["per_update"]
        for name, limit in (("memory:counter", 2.0), ("memory:cart", 3.0)):
            for style, suffix in (("message.session", ""), ("a session parameter", ":param")):
                x = pu[name + suffix]["ratio"]
                rows.append([f"{name.replace(':', ' ')} <= {limit:.1f}x bare dispatch, handler reads {style}", f"{x:.2f}x", verdict(x <= limit)])
        for name in pu:
            if name.endswith(":lazy"):
                x = pu[name]["ratio"]
                rows.append([f"lazy, untouched update <= 1.2x bare dispatch: {name.split(':')[0]}", f"{x:.2f}x", verdict(x <= 1.2)])
        if "async:memory:counter" in pu:
            x = pu["async:memory:counter"]["ratio"]
            rows.append(["async memory counter <= 2.0x bare AsyncTeleBot dispatch", f"{x:.2f}x", verdict(x <= 2.0)])
    if "durable" in r:
        x = r["durable"]["ratio"]["changed"]
        rows.append(["FileStorage changed session <= 1.5x durable-write floor", f"{x:.2f}x", verdict(x <= 1.5)])
        n = r["durable"]["rewritten"]
        rows.append(["unchanged session costs no write", f"{n} records rewritten in {r['durable']['updates']:,} updates", verdict(n == 0)])
    for key, goal, label in (("scale_file", 100_000, "FileStorage"), ("scale_sqlite", 1_000_000, "SQLiteStorage")):
        if key in r:
            largest = max(r[key]["save_ratio"])
            x = r[key]["save_ratio"][largest]
            hot = r[key]["save_hot_ratio"][largest]
            figure = f"{x:.2f}x (200 hot keys: {hot:.2f}x)"
            if largest < goal:
                rows.append([f"{label} save at {goal:,} within 1.2x of at 10", f"at {largest:,} only: {figure}", "not checked (--quick)"])
            else:
                rows.append([f"{label} save at {goal:,} within 1.2x of at 10", figure, verdict(x <= 1.2)])
    if "memory" in r:
        x = r["memory"]["ratio"]
        rows.append(["MemoryStorage <= 1.3x the plain objects", f"{x:.2f}x ({r['memory']['stored']:,.0f} vs {r['memory']['plain']:,.0f} bytes/session)", verdict(x <= 1.3)])
    if "contention" in r:
        rows += contention_targets(r["contention"], verdict)
    if "races" in r:
        for name, lost in r["races"].items():
            if name.startswith("telesession"):
                rows.append([f"zero lost updates: {name}", f"lost {', '.join(map(str, lost))}", verdict(not any(lost))])
        for name, lost in r["races"].items():
            if name.startswith("telebot"):
                rows.append([f"  beside it: {name} (retrieve_data)", f"lost {', '.join(map(str, lost))}", "-"])
    v = r.get("versus")
    if v:
        for session in ("counter", "cart"):
            before, after, growth = v["before"][session], v["after"][session], v["growth"][session]
            figure = f"{growth:.2f}x ({after:.1f} vs {before:.1f} us over bare dispatch)"
            rows.append([f"memory {session}: cost over bare no higher than before the engine ({v['rev']})", figure, verdict(growth <= 1.0)])
    return rows


def contention_targets(c: dict[str, Any], verdict: Callable[[bool], str]) -> list[list[object]]:
    rows: list[list[object]] = []
    telesession = [name for name in c.get("slow", {}) if name.startswith("telesession")]
    for name in telesession:
        s = c["slow"][name]
        figure = f"{s['vs_no_slow']:.2f}x ({s['done_ms']:,.0f} vs {s['no_slow_ms']:,.0f} ms)"
        rows.append([f"slow chat: others within 1.3x of no slow chat ({name})", figure, verdict(s["vs_no_slow"] <= 1.3 and s["ok"])])
    for name in telesession:
        s = c["slow"][name]
        figure = f"{s['vs_bare_slow']:.2f}x ({s['done_ms']:,.0f} vs {s['bare_slow_ms']:,.0f} ms"
        figure += ")" if s["no_slow_ms"] <= s["bare_slow_ms"] else f"; {s['no_slow_ms']:,.0f} ms without the slow chat)"
        label = f"slow chat: others no worse than bare telebot with the slow chat ({name})"
        rows.append([label, figure, verdict(s["vs_bare_slow"] <= 1.0 and s["ok"])])
    for name, a in c.get("album", {}).items():
        if name.startswith("telesession"):
            figure = f"{a['p99_vs_bare']:.2f}x ({a['p99_ms']:,.1f} vs {a['bare_p99_ms']:,.0f} ms; {a['no_album_p99_ms']:,.1f} ms without the album)"
            rows.append([f"album: others' p99 <= bare telebot's ({name})", figure, verdict(a["p99_vs_bare"] <= 1.0 and a["ok"])])
    blocked = c.get("blocked", {})
    for name, b in blocked.items():
        if name.startswith("telesession"):
            rows.append([f"blocked chat, 2 workers: the others complete ({name})", b["figure"], verdict(b["done"])])
    for name, b in blocked.items():
        if not name.startswith("telesession"):
            rows.append([f"  beside it: {name} (no per-chat order: both workers wait in the handler)", b["figure"], "-"])
    problems = c.get("problems", [])
    rows.append(["contention: no update lost, doubled or stuck", f"{len(problems)} problem(s)", verdict(not problems)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="telesession benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller counts and sizes, fewer rounds")
    parser.add_argument("--only", metavar="NAMES", help=f"comma-separated, from: {', '.join(BENCHMARKS)}")
    parser.add_argument("--profile", metavar="KIND:SESSION", help="cProfile one per-update configuration (memory:cart, file:counter, memory:lazy, bare ...)")
    args = parser.parse_args()
    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = set(names) - set(BENCHMARKS)
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)}")

    started = time.monotonic()
    with context(args.quick) as ctx:
        if args.profile:
            per_update.profile(ctx, args.profile)
            return
        print(f"telesession benchmarks{' (quick)' if args.quick else ''}: {', '.join(names)}; temp dir {ctx.root}")
        for name in names:
            BENCHMARKS[name](ctx)
        header("Targets")
        table(["target", "measured", "verdict"], targets(ctx))
        print(f"\ntotal {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
