"""What do the codec's generated straight-line functions buy over its plain per-field loops?

The cart session of ``_common`` (5 nested item dataclasses, a dict of 5 strings, an Optional, a
datetime), encoded to its JSON-ready dict and decoded back three ways:

- generated: ``codec._encode``/``codec._decode``, what ``encode``/``decode`` run (one function
  per direction, the items written out inline);
- loop, cart: ``codec._encode_loop``/``codec._decode_loop``, the per-field loop for the cart,
  which still converts each item with the item's generated function;
- loop, all: the per-field loop at every level, from codecs built without ``_compile`` for
  copies of the same classes.

Each sample times a loop of calls; cases are interleaved round by round (order rotated) and the
table shows median microseconds per call and how many times faster the generated function is
(the median of per-round ratios). Before timing, the script checks that all three give the same
dict and equal sessions.

Standalone: ``python benchmarks/codec_paths.py [--quick]``.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
from collections.abc import Callable
from typing import Any
from unittest import mock

from _common import Cart, Item, header, interleaved, median, ratio, table, timed

from telesession.codec import Codec, codec_for


@dataclasses.dataclass
class LoopItem(Item):
    pass


@dataclasses.dataclass
class LoopCart(Cart):
    items: list[LoopItem] = dataclasses.field(default_factory=list)  # type: ignore[assignment]


def sample_cart() -> Cart:
    cart = Cart(coupon="WELCOME10", visits=7)
    cart.items[2].qty = 4
    return cart


def loop_only_codec() -> Codec[LoopCart]:
    """The codec of LoopCart (and so of LoopItem) as it is before ``_compile``: loops only."""
    with mock.patch.object(Codec, "_compile", lambda self: None):
        return codec_for(LoopCart)


def as_loop_cart(cart: Cart) -> LoopCart:
    items = [LoopItem(**dataclasses.asdict(item)) for item in cart.items]
    return LoopCart(**{**{f.name: getattr(cart, f.name) for f in dataclasses.fields(Cart)}, "items": items})


def paths() -> dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any], Any]]:
    """name -> (encode, decode, the session it encodes)."""
    codec, loops = codec_for(Cart), loop_only_codec()
    cart = sample_cart()
    return {
        "generated": (codec._encode, codec._decode, cart),
        "loop, cart": (codec._encode_loop, codec._decode_loop, cart),
        "loop, all": (loops._encode, loops._decode, as_loop_cart(cart)),
    }


def check_same_output() -> bool:
    """Whether every path encodes to the same dict and decodes it to an equal session."""
    data = codec_for(Cart).encode(sample_cart())
    same = True
    for encode, decode, session in paths().values():
        same = same and encode(session) == data and dataclasses.asdict(decode(data)) == dataclasses.asdict(sample_cart())
    return same


def cases(loops: int) -> dict[str, Callable[[], float]]:
    data = codec_for(Cart).encode(sample_cart())

    def per_call(fn: Callable[[Any], Any], arg: Any) -> Callable[[], float]:
        def run() -> float:
            def body() -> None:
                for _ in range(loops):
                    fn(arg)

            return timed(body) / loops * 1e6

        return run

    out = {}
    for name, (encode, decode, session) in paths().items():
        out[f"{name} encode"] = per_call(encode, session)
        out[f"{name} decode"] = per_call(decode, data)
    return out


def main(quick: bool) -> None:
    print(f"Python {platform.python_version()} ({platform.python_implementation()}), {platform.platform()}")
    header("Codec: generated straight-line functions against the per-field loops (Cart session)")
    print(f"  all paths give the same dict and equal sessions: {check_same_output()}")
    loops, rounds = (300, 5) if quick else (2000, 15)
    samples = interleaved(cases(loops), rounds)
    rows = []
    for name in paths():
        row: list[object] = [name]
        for verb in ("encode", "decode"):
            ours, generated = samples[f"{name} {verb}"], samples[f"generated {verb}"]
            row += [median(ours), ratio(median([a / b for a, b in zip(ours, generated)]))]
        rows.append(row)
    table(
        ["path", "encode us", "generated is", "decode us", "generated is"],
        rows,
        title=f"median of {rounds} interleaved rounds of {loops} calls; 'generated is': times faster than this path",
    )


if __name__ == "__main__":
    main("--quick" in sys.argv)
