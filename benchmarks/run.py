"""Run telesession's benchmarks and check the results against the targets.

    python benchmarks/run.py                 # everything, a few minutes
    python benchmarks/run.py --quick         # smaller counts and sizes, under a minute
    python benchmarks/run.py --only races,codec
    python benchmarks/run.py --profile memory:cart   # cProfile the per-update loop of one configuration

One temp dir and one private redis-server (127.0.0.1, no persistence) serve every benchmark
and are removed at exit. Each benchmark is a module of this folder that answers one question
(its docstring says how it measures); every comparison is a ratio of medians measured in the
same run, in interleaved rounds, because the machine is small and shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import codec_cost
import durable_write
import per_update
import races
import scale
from _common import Context, context, header, table

BENCHMARKS: dict[str, Callable[[Context], None]] = {
    "per_update": per_update.run,
    "codec": codec_cost.run,
    "scale": scale.run,
    "durable": durable_write.run,
    "races": races.run,
}


def targets(ctx: Context) -> list[list[object]]:
    """[target, figure, verdict] for every target whose benchmark ran."""
    r: dict[str, Any] = ctx.results
    rows: list[list[object]] = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    if "per_update" in r:
        for name, limit in (("memory:counter", 2.0), ("memory:cart", 3.0)):
            for style, suffix in (("message.session", ""), ("a session parameter", ":param")):
                x = r["per_update"][name + suffix]["ratio"]
                rows.append([f"{name.replace(':', ' ')} <= {limit:.1f}x bare dispatch, handler reads {style}", f"{x:.2f}x", verdict(x <= limit)])
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
    if "races" in r:
        for name, lost in r["races"].items():
            if name.startswith("telesession"):
                rows.append([f"zero lost updates: {name}", f"lost {', '.join(map(str, lost))}", verdict(not any(lost))])
        for name, lost in r["races"].items():
            if name.startswith("telebot"):
                rows.append([f"  beside it: {name} (retrieve_data)", f"lost {', '.join(map(str, lost))}", "-"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="telesession benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller counts and sizes, fewer rounds")
    parser.add_argument("--only", metavar="NAMES", help=f"comma-separated, from: {', '.join(BENCHMARKS)}")
    parser.add_argument("--profile", metavar="KIND:SESSION", help="cProfile one per-update configuration (memory:cart, file:counter, bare ...)")
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
        print(f"Python {platform.python_version()} ({platform.python_implementation()}), {os.cpu_count()} CPUs, {platform.platform()}")
        for name in names:
            BENCHMARKS[name](ctx)
        header("Targets")
        table(["target", "measured", "verdict"], targets(ctx))
        print(f"\ntotal {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
