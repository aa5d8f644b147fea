"""_json.dumps: strict JSON, refusing with an EncodeError that names the key and the path."""

from __future__ import annotations

import pickle
import sys
from collections import UserDict
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

from telesession import _json
from telesession._json import MAX_DEPTH, dumps, loads
from telesession.errors import EncodeError

NAN, INF = float("nan"), float("inf")


def nested(depth: int, kind: str) -> Any:
    """``depth`` lists or dicts ({"a": ...}) inside one another, around 1."""
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


def refusal(value: Any) -> EncodeError:
    """The EncodeError that dumps(value, key="42") raises."""
    with pytest.raises(EncodeError) as caught:
        dumps(value, key="42")
    assert caught.value.key == "42"
    return caught.value


@pytest.mark.parametrize("number, shown", [(NAN, "NaN"), (INF, "Infinity"), (-INF, "-Infinity")])
def test_non_finite_float_at_top_level(number: float, shown: str) -> None:
    """A bare NaN or infinity is refused, the path empty and the message saying "it"."""
    error = refusal(number)
    assert error.path == ""
    assert str(error) == f"session '42' cannot be stored: it holds {shown}, which JSON can't hold"


@pytest.mark.parametrize(
    "value, path",
    [
        ({"cart": {"items": [{"price": 1.0}, {"price": None}, {"price": NAN}]}}, "cart.items[2].price"),
        ({"a": [None, [0.5, -INF]]}, "a[1][1]"),
        ([{"x": None}, (1.0, INF)], "[1][1]"),
        ({"ok": None, "bad": {"deeper": {"still": NAN}}}, "bad.deeper.still"),
    ],
)
def test_non_finite_float_inside_names_the_path(value: Any, path: str) -> None:
    """NaN and infinities inside dicts, lists and tuples are refused with their path."""
    error = refusal(value)
    assert error.path == path
    assert f"cannot be stored: {path} holds" in str(error) and "which JSON can't hold" in str(error)


def test_message_without_a_key() -> None:
    """Without a key the message speaks of "the value"."""
    with pytest.raises(EncodeError, match=r"^the value cannot be stored: x holds NaN") as caught:
        dumps({"x": NAN})
    assert caught.value.key is None


def test_none_values_still_dump() -> None:
    """None, and "null" inside strings, dump as orjson writes them: the walk that null triggers finds nothing."""
    value = {"coupon": None, "items": [None, {"price": 1.5, "note": "null"}], "t": (None, 2.5)}
    assert dumps(value) == orjson.dumps(value)
    assert loads(dumps(value)) == {"coupon": None, "items": [None, {"price": 1.5, "note": "null"}], "t": [None, 2.5]}


def test_output_without_null_skips_the_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output with no null token is returned as orjson wrote it, without walking the value."""

    def walk(value: Any) -> bool:
        raise AssertionError("walked")

    monkeypatch.setattr(_json, "_all_finite", walk)
    value = {"count": 7, "items": [{"price": 1.5}], "big": 2**64 - 1, "small": -(2**63)}
    assert dumps(value) == orjson.dumps(value)


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 10**5000], ids=["2**64", "-2**63-1", "10**5000"])
def test_integers_beyond_64_bits(number: int) -> None:
    """Integers outside [-2**63, 2**64) are refused with their path, even ones too long to print."""
    error = refusal({"n": [number]})
    assert error.path == "n[0]"
    assert "outside JSON's 64-bit range" in str(error)


def test_integers_at_the_64_bit_edges_dump() -> None:
    """The smallest and largest integers orjson writes come back as they went in."""
    value = [-(2**63), 2**64 - 1]
    assert loads(dumps(value)) == value


@pytest.mark.parametrize(
    "value, path",
    [({1: "a"}, ""), ({"a": {(1, 2): "b"}}, "a"), ({"a": [{None: 1}]}, "a[0]"), ({"a": {10**5000: 1}}, "a")],
    ids=["int", "tuple", "None", "long int"],
)
def test_non_str_keys(value: Any, path: str) -> None:
    """A dict with a key that is not a str is refused, the path naming the dict."""
    error = refusal(value)
    assert error.path == path
    assert "that is not a str" in str(error)


class Text(str):
    pass


class Table(dict):  # type: ignore[type-arg]
    pass


@pytest.mark.parametrize(
    "part, name",
    [
        (datetime(2026, 1, 1, tzinfo=timezone.utc), "datetime"),
        ({1, 2}, "set"),
        (object(), "object"),
        (b"bytes", "bytes"),
        (Text("x"), "Text"),
        (Table(), "Table"),
        (UserDict(), "UserDict"),
    ],
)
def test_values_of_other_types(part: Any, name: str) -> None:
    """Datetimes, sets, bytes, objects and subclasses of JSON types are refused, not converted."""
    error = refusal({"cart": {"when": [part]}})
    assert error.path == "cart.when[0]"
    assert f"cart.when[0] holds a value of type {name}, which is not JSON" in str(error)
    assert isinstance(error.original_error, TypeError)


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_nested_10000_deep(kind: str) -> None:
    """A value nested 10,000 deep is refused as nested too deep, with a shortened path, never RecursionError."""
    assert sys.getrecursionlimit() < 10_000  # so a recursive walk would have failed
    error = refusal(nested(10_000, kind))
    segment = "[0]" if kind == "list" else ".a"
    assert error.path == (segment * MAX_DEPTH).removeprefix(".")
    assert "nested too deep" in str(error)
    shown = (segment * 4).removeprefix(".") + "..." + (segment * 4).removeprefix(".")
    assert f"cannot be stored: {shown} holds a {kind} nested too deep" in str(error)


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_deepest_value_orjson_writes(kind: str) -> None:
    """A value exactly MAX_DEPTH deep dumps; one level more is refused."""
    assert loads(dumps(nested(MAX_DEPTH, kind))) == nested(MAX_DEPTH, kind)
    assert "nested too deep" in str(refusal(nested(MAX_DEPTH + 1, kind)))


def test_encode_error_pickles() -> None:
    """The refusal keeps its key, path and message through pickling, as every telesession error."""
    error = pickle.loads(pickle.dumps(refusal({"a": [NAN]})))
    assert (error.key, error.path, str(error)) == ("42", "a[0]", "session '42' cannot be stored: a[0] holds NaN, which JSON can't hold")
