"""Question 2: what does turning a session into JSON-ready data and back cost?

The cart session (5 nested item dataclasses, a dict of 5 strings, an Optional, a datetime):

- telesession: ``codec_for(Cart).encode(cart)`` -> dict, ``.decode(dict)`` -> Cart;
- dataclasses-json 0.6.7: ``to_dict(encode_json=True)`` (JSON-ready, like ours; its default
  ``to_dict()`` leaves the datetime as an object) and ``from_dict``, on a subclass of the same
  classes with ``DataClassJsonMixin``;
- stdlib ``json.dumps``/``json.loads`` of the equivalent dict, and orjson's, as the floor (these
  are dict <-> bytes/str: a different step, shown as a scale, not as competitors).

Each sample times a loop of calls; cases are interleaved round by round (order rotated) and
the table shows the median microseconds per call. Before timing, the script checks that our
codec and dataclasses-json give the same dict and decode to equal objects.

Standalone: ``python benchmarks/codec_cost.py [--quick]``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from typing import Any

import orjson
from _common import Cart, Context, Item, context, header, interleaved, median, ratio, table, timed
from dataclasses_json import DataClassJsonMixin

from telesession.codec import codec_for


@dataclasses.dataclass
class ItemDJ(Item, DataClassJsonMixin):
    pass


def _items_dj() -> list[ItemDJ]:
    return [ItemDJ(**dataclasses.asdict(item)) for item in Cart().items]


@dataclasses.dataclass
class CartDJ(Cart, DataClassJsonMixin):
    items: list[ItemDJ] = dataclasses.field(default_factory=_items_dj)  # type: ignore[assignment]


def sample_cart() -> Cart:
    cart = Cart(coupon="WELCOME10", visits=7)
    cart.items[2].qty = 4
    return cart


def cases(loops: int) -> dict[str, Callable[[], float]]:
    codec = codec_for(Cart)
    cart = sample_cart()
    cart_dj = CartDJ(**{f.name: getattr(cart, f.name) for f in dataclasses.fields(Cart)})
    cart_dj.items = [ItemDJ(**dataclasses.asdict(item)) for item in cart.items]
    data = codec.encode(cart)
    text = json.dumps(data)
    raw = orjson.dumps(data)

    def loop(fn: Callable[[], Any]) -> Callable[[], float]:
        def run() -> float:
            def body() -> None:
                for _ in range(loops):
                    fn()

            return timed(body) / loops * 1e6

        return run

    return {
        "telesession encode": loop(lambda: codec.encode(cart)),
        "telesession decode": loop(lambda: codec.decode(data)),
        "dataclasses-json encode": loop(lambda: cart_dj.to_dict(encode_json=True)),
        "dataclasses-json decode": loop(lambda: CartDJ.from_dict(data)),
        "json encode": loop(lambda: json.dumps(data)),
        "json decode": loop(lambda: json.loads(text)),
        "orjson encode": loop(lambda: orjson.dumps(data)),
        "orjson decode": loop(lambda: orjson.loads(raw)),
    }


def check_same_output() -> tuple[bool, bool, int]:
    """(same encoded dict as dataclasses-json, decodes equal, size of the JSON in bytes)."""
    codec = codec_for(Cart)
    cart = sample_cart()
    ours = codec.encode(cart)
    cart_dj = CartDJ.from_dict(ours)
    theirs = json.loads(cart_dj.to_json())
    back = codec.decode(ours)
    same_decode = dataclasses.asdict(back) == dataclasses.asdict(cart_dj) and back.created == cart.created
    return ours == theirs, same_decode, len(orjson.dumps(ours))


def run(ctx: Context) -> None:
    header("2. Codec: Cart session <-> JSON-ready dict")
    same_dict, same_decode, size = check_same_output()
    print(f"  the cart's JSON is {size} bytes; telesession's dict == dataclasses-json's: {same_dict}; decoded objects equal: {same_decode}")
    loops, rounds = (200, 5) if ctx.quick else (1000, 9)
    samples = interleaved(cases(loops), rounds)
    us = {name: median(values) for name, values in samples.items()}
    rows = []
    for who in ("telesession", "dataclasses-json", "json", "orjson"):
        enc, dec = us[f"{who} encode"], us[f"{who} decode"]
        rows.append([
            who, enc, dec, enc + dec,
            ratio((us["dataclasses-json encode"] + us["dataclasses-json decode"]) / (enc + dec)),
        ])  # fmt: skip
    table(
        ["codec", "encode us", "decode us", "round trip us", "faster than dataclasses-json"],
        rows,
        title=f"median of {rounds} interleaved rounds of {loops} calls; json/orjson: dict <-> text of the same data (scale only)",
    )
    ctx.results["codec"] = us
    ctx.results["codec_checks"] = {"same_dict": same_dict, "same_decode": same_decode}


if __name__ == "__main__":
    with context("--quick" in sys.argv) as c:
        run(c)
