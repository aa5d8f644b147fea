"""codec_for: the same stored format as dataclasses-json, decoded to the same objects, errors that name the field."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Optional, Union

import orjson
import pytest
from dataclasses_json import CatchAll, LetterCase, Undefined, cfg, config, dataclass_json
from dataclasses_json.stringcase import camelcase
from dataclasses_json.core import _asdict, _decode_dataclass, _ExtendedEncoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telesession import _json
from telesession._json import MAX_DEPTH
from telesession.codec import Codec, codec_for
from telesession.errors import DecodeError, EncodeError

# -- session classes ----------------------------------------------------------------------


class Stage(enum.Enum):
    BROWSING = "browsing"
    CHECKOUT = "checkout"
    PAID = "paid"


class Size(str, enum.Enum):
    S = "s"
    M = "m"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Flat:
    count: int = 0


@dataclass
class Item:
    sku: str
    title: str
    price: float
    qty: int = 1


@dataclass
class Cart:
    user_id: int
    items: list[Item] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    coupon: Optional[str] = None
    updated: datetime = field(default_factory=lambda: datetime(2026, 1, 1))
    stage: Stage = Stage.BROWSING


@dataclass_json(letter_case=LetterCase.CAMEL)  # type: ignore[call-overload]  # LetterCase members are functions
@dataclass
class Profile:
    user_name: str
    last_seen_at: Optional[datetime] = None
    favorite_items: list[str] = field(default_factory=list)
    shipping_address: Optional[Address] = None  # a forward reference, resolved late


@dataclass
class Address:
    street_line: str
    zip_code: str = ""


def _date_encoder(value: date) -> str:
    return value.isoformat()


@dataclass
class Configured:
    chat_id: int = field(metadata=config(field_name="chat"))
    birthday: date = field(default=date(2000, 1, 1), metadata=config(encoder=_date_encoder, decoder=date.fromisoformat))
    secret: Optional[str] = field(default=None, metadata=config(exclude=lambda value: value is None))
    page_size: int = field(default=10, metadata=config(letter_case=LetterCase.CAMEL))


@dataclass
class Everything:
    tags: set[str] = field(default_factory=set)
    frozen: frozenset[int] = frozenset()
    numbers: tuple[int, ...] = ()
    grid: list[list[int]] = field(default_factory=list)
    by_id: dict[int, str] = field(default_factory=dict)
    by_size: dict[Size, int] = field(default_factory=dict)
    baskets: dict[str, list[Item]] = field(default_factory=dict)
    price: Optional[Decimal] = None
    token: uuid.UUID | None = None
    level: Level = Level.LOW
    size: Size | None = None
    extra: Any = None
    bare_list: list = field(default_factory=list)  # type: ignore[type-arg]
    bare_dict: dict = field(default_factory=dict)  # type: ignore[type-arg]
    nested: Optional[Flat] = None
    when: Optional[datetime] = None


@dataclass
class Node:
    name: str
    children: list[Node] = field(default_factory=list)


@dataclass
class Exotic:
    """Shapes the codec hands to dataclasses-json."""

    pair: tuple[int, str] = (0, "")
    either: Union[Item, Address, None] = None
    counts: Counter[str] = field(default_factory=Counter)


@dataclass_json(undefined=Undefined.INCLUDE)
@dataclass
class KeepsUnknown:
    name: str
    rest: CatchAll = None  # type: ignore[assignment]


@dataclass
class Lifecycle:
    a: int
    b: str = "b"
    computed: int = field(init=False, default=0)
    c: float = field(kw_only=True, default=0.5)

    def __post_init__(self) -> None:
        self.computed = self.a * 2


@dataclass(init=False)
class Swapped:
    a: int
    b: str

    def __init__(self, b: str, a: int) -> None:  # parameters in another order than the fields
        self.a, self.b = a, b


@dataclass
class Chain:
    """Dataclasses nested past the depth the fast paths write out in one function."""

    name: str
    next: Optional[Chain] = None


@dataclass
class Deep:
    """Nested shapes the fast paths write out in place, beside classes they must call instead."""

    carts: list[Cart] = field(default_factory=list)
    by_name: dict[str, Optional[Item]] = field(default_factory=dict)
    maybe: Optional[list[Optional[Item]]] = None
    grid: list[list[Flat]] = field(default_factory=list)
    swapped: list[Swapped] = field(default_factory=list)
    lifecycle: Optional[Lifecycle] = None
    profile: Optional[Profile] = None
    tree: Optional[Node] = None
    chain: Optional[Chain] = None
    stamps: dict[str, Optional[datetime]] = field(default_factory=dict)


def dcj_encode(obj: Any) -> Any:
    """What dataclasses-json stores: to_json() where the class has it, its exact code otherwise."""
    if hasattr(obj, "to_json"):
        return json.loads(obj.to_json())
    return json.loads(json.dumps(_asdict(obj), cls=_ExtendedEncoder))


def dcj_decode(cls: type, data: Any) -> Any:
    return _decode_dataclass(cls, json.loads(json.dumps(data)), False)


def only_json_types(value: Any) -> bool:
    if type(value) is dict:
        return all(type(k) is str and only_json_types(v) for k, v in value.items())
    if type(value) is list:
        return all(only_json_types(v) for v in value)
    return type(value) in (str, int, float, bool, type(None))


# -- strategies ---------------------------------------------------------------------------

text = st.text(max_size=12)
floats = st.floats(allow_nan=False, allow_infinity=False)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
naive = st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(2100, 1, 1))
aware = naive.map(lambda d: d.replace(tzinfo=timezone(timedelta(hours=3))))
datetimes = naive | aware
items = st.builds(Item, sku=text, title=text, price=floats, qty=ints)
flats = st.builds(Flat, count=ints)

STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "flat": flats,
    "cart": st.builds(
        Cart,
        user_id=ints,
        items=st.lists(items, min_size=5, max_size=5),
        notes=st.dictionaries(text, text, min_size=5, max_size=5),
        coupon=st.none() | text,
        updated=datetimes,
        stage=st.sampled_from(Stage),
    ),
    "camel": st.builds(
        Profile,
        user_name=text,
        last_seen_at=st.none() | datetimes,
        favorite_items=st.lists(text),
        shipping_address=st.none() | st.builds(Address, street_line=text, zip_code=text),
    ),
    "configured": st.builds(
        Configured, chat_id=ints, birthday=st.dates(), secret=st.none() | text, page_size=ints
    ),
    "everything": st.builds(
        Everything,
        tags=st.sets(text),
        frozen=st.frozensets(ints),
        numbers=st.lists(ints).map(tuple),
        grid=st.lists(st.lists(ints)),
        by_id=st.dictionaries(ints, text),
        by_size=st.dictionaries(st.sampled_from(Size), ints),
        baskets=st.dictionaries(text, st.lists(items, max_size=2), max_size=2),
        price=st.none() | st.decimals(allow_nan=False, allow_infinity=False),
        token=st.none() | st.uuids(),
        level=st.sampled_from(Level),
        size=st.none() | st.sampled_from(Size),
        extra=st.recursive(st.none() | st.booleans() | ints | floats | text, lambda inner: st.lists(inner) | st.dictionaries(text, inner), max_leaves=6),
        bare_list=st.lists(ints | text),
        bare_dict=st.dictionaries(text, ints),
        nested=st.none() | flats,
        when=st.none() | datetimes,
    ),
    "recursive": st.recursive(
        st.builds(Node, name=text, children=st.just([])),
        lambda inner: st.builds(Node, name=text, children=st.lists(inner, max_size=3)),
        max_leaves=8,
    ),
    "exotic": st.builds(
        Exotic,
        pair=st.tuples(ints, text),
        either=st.none() | items | st.builds(Address, street_line=text, zip_code=text),
        counts=st.dictionaries(text, st.integers(0, 9)).map(Counter),
    ),
    "catch-all": st.builds(KeepsUnknown, name=text, rest=st.dictionaries(st.sampled_from(["a", "b"]), ints)),
}
chains = st.recursive(st.builds(Chain, name=text), lambda inner: st.builds(Chain, name=text, next=inner), max_leaves=7)
STRATEGIES["deep"] = st.builds(
    Deep,
    carts=st.lists(STRATEGIES["cart"], max_size=2),
    by_name=st.dictionaries(text, st.none() | items, max_size=3),
    maybe=st.none() | st.lists(st.none() | items, max_size=3),
    grid=st.lists(st.lists(flats, max_size=2), max_size=2),
    swapped=st.lists(st.builds(Swapped, b=text, a=ints), max_size=2),
    lifecycle=st.none() | st.builds(Lifecycle, a=st.integers(-(2**62), 2**62 - 1), b=text, c=floats),  # computed = 2a fits 64 bits
    profile=st.none() | STRATEGIES["camel"],
    tree=st.none() | STRATEGIES["recursive"],
    chain=st.none() | chains,
    stamps=st.dictionaries(text, st.none() | datetimes, max_size=3),
)


@pytest.mark.parametrize("kind", list(STRATEGIES))
@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_matches_dataclasses_json(kind: str, data: st.DataObject) -> None:
    """For any instance, encode is what dataclasses-json stores and decode is what it loads."""
    session = data.draw(STRATEGIES[kind])
    codec = codec_for(type(session))
    stored = codec.encode(session)
    assert stored == dcj_encode(session)
    assert only_json_types(stored)
    assert orjson.loads(orjson.dumps(stored)) == stored
    assert codec.decode(stored) == dcj_decode(type(session), stored)


json_values = st.recursive(
    st.none() | st.booleans() | ints | floats | text | st.sampled_from(["browsing", "s", "1", "2020-01-01"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text | st.sampled_from(["sku", "title", "price", "count"]), inner, max_size=3),
    max_leaves=8,
)
any_values = st.recursive(
    json_values | datetimes | st.sampled_from([*Stage, *Size, *Level]) | st.uuids() | st.decimals(allow_nan=False) | items | st.dates(),
    lambda inner: st.lists(inner, max_size=3).flatmap(lambda xs: st.sampled_from([xs, tuple(xs)]))
    | st.dictionaries(text | ints, inner, max_size=3)
    | st.frozensets(ints | text, max_size=3),
    max_leaves=8,
)
FUZZED = [Flat, Item, Cart, Profile, Configured, Everything, Node, Exotic, KeepsUnknown, Lifecycle, Swapped, Chain, Deep]


@pytest.mark.parametrize("cls", FUZZED, ids=lambda c: c.__name__)
@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_data_decodes_as_dataclasses_json_does(cls: type, data: st.DataObject) -> None:
    """For arbitrary JSON under the class's keys, decode equals from_dict, or both fail (ours: DecodeError)."""
    keys = [json_key for f in dataclasses.fields(cls) for json_key in (f.name, camelcase(f.name), "chat")]
    assert_decodes_as_dataclasses_json(cls, data.draw(st.dictionaries(st.sampled_from(keys), json_values)))


def assert_decodes_as_dataclasses_json(cls: type, record: Any) -> None:
    """decode(record) equals from_dict(record), or both fail (ours with DecodeError)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dataclasses-json warns about nulls in non-Optional fields
        try:
            expected = dcj_decode(cls, record)
        except Exception:
            with pytest.raises(DecodeError):
                codec_for(cls).decode(record)
            return
        assert codec_for(cls).decode(record) == expected


def places(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in a JSON value, depth first."""
    found: list[tuple[Any, Any]] = []
    for k, x in value.items() if type(value) is dict else enumerate(value) if type(value) is list else ():
        found += [(value, k), *places(x)]
    return found


@pytest.mark.parametrize("kind", ["cart", "everything", "recursive", "deep"])
@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_record_changed_anywhere_decodes_as_dataclasses_json_does(kind: str, data: st.DataObject) -> None:
    """A stored record with one value deep inside replaced or removed decodes as from_dict, or both fail."""
    session = data.draw(STRATEGIES[kind])
    cls, record = type(session), dcj_encode(session)
    where = places(record)
    if where:
        container, k = data.draw(st.sampled_from(where))
        if type(container) is dict and data.draw(st.booleans()):
            del container[k]
        else:
            container[k] = data.draw(json_values)
    assert_decodes_as_dataclasses_json(cls, record)


@pytest.mark.parametrize("cls", FUZZED, ids=lambda c: c.__name__)
@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_values_encode_as_dataclasses_json_does(cls: type, data: st.DataObject) -> None:
    """Whatever the fields hold, whatever their hints say, encode equals to_json, or both fail (ours: EncodeError)."""
    session: Any = object.__new__(cls)
    for f in dataclasses.fields(cls):
        object.__setattr__(session, f.name, data.draw(any_values))
    try:
        expected = dcj_encode(session)
    except Exception:
        with pytest.raises(EncodeError):
            codec_for(cls).encode(session)
        return
    assert codec_for(cls).encode(session) == expected


# -- format details -----------------------------------------------------------------------


def test_cart_stored_form() -> None:
    """The cart is stored as dataclasses-json stores it: epoch float, enum value, nested dicts."""
    moment = datetime(2026, 3, 1, 12, 30, tzinfo=timezone.utc)
    cart = Cart(7, [Item("a", "Apple", 1.5, 2)], {"k": "v"}, None, moment, Stage.PAID)
    assert codec_for(Cart).encode(cart) == {
        "user_id": 7,
        "items": [{"sku": "a", "title": "Apple", "price": 1.5, "qty": 2}],
        "notes": {"k": "v"},
        "coupon": None,
        "updated": moment.timestamp(),
        "stage": "paid",
    }


def test_field_configuration() -> None:
    """field_name, per-field and class-level letter case, encoder/decoder and exclude all apply."""
    stored = codec_for(Configured).encode(Configured(chat_id=5, birthday=date(1999, 12, 31)))
    assert stored == {"chat": 5, "birthday": "1999-12-31", "pageSize": 10}
    assert codec_for(Configured).decode(stored) == Configured(chat_id=5, birthday=date(1999, 12, 31))
    assert codec_for(Profile).encode(Profile("ann"))["userName"] == "ann"


@pytest.fixture
def new_york() -> Iterator[None]:
    """Local time is America/New_York for the test, then back."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_naive_datetime_comes_back_aware_in_local_time(new_york: None) -> None:
    """A naive datetime is stored as local time and comes back aware, with dataclasses-json's zone."""
    stored = codec_for(Cart).encode(Cart(1, updated=datetime(2026, 7, 1, 9, 0)))
    ours, theirs = codec_for(Cart).decode(stored).updated, dcj_decode(Cart, stored).updated
    assert ours == theirs == datetime(2026, 7, 1, 9, 0).astimezone()
    assert (ours.tzinfo, ours.tzname(), ours.hour) == (theirs.tzinfo, theirs.tzname(), theirs.hour)
    assert ours.tzname() in ("EST", "EDT")  # the offset in force now, not on July 1st, as there


def test_lenient_decoding_matches() -> None:
    """Where dataclasses-json converts or tolerates ("5" for an int, null anywhere), so does decode."""
    data = {"user_id": "5", "items": [{"sku": 1, "title": "t", "price": 2, "qty": True}], "notes": None, "updated": 0}
    with pytest.warns(RuntimeWarning):
        expected = dcj_decode(Cart, data)
    assert codec_for(Cart).decode(data) == expected
    assert codec_for(Cart).decode(data).user_id == 5
    nulls = {"name": "a", "children": [None], "extra": 1}
    assert codec_for(Node).decode(nulls) == dcj_decode(Node, nulls) == Node("a", [None])  # type: ignore[list-item]


def test_both_key_spellings_last_wins() -> None:
    """With both the camelCase key and the field name in the data, the later one wins, as there."""
    for data in ({"userName": "a", "user_name": "b"}, {"user_name": "b", "userName": "a"}):
        assert codec_for(Profile).decode(data) == dcj_decode(Profile, data)


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and other.cents == self.cents


@dataclass
class Wallet:  # field.type is a string here, so global config matches inside list[...] only
    balance: Money
    history: list[Money]


def test_global_config_encoders_and_decoders(monkeypatch: pytest.MonkeyPatch) -> None:
    """Encoders and decoders in dataclasses_json.cfg.global_config apply exactly where they do there."""
    monkeypatch.setitem(cfg.global_config.encoders, Money, lambda m: f"{m.cents / 100:.2f}")
    monkeypatch.setitem(cfg.global_config.decoders, Money, lambda s: Money(round(float(s) * 100)))
    wallet = Wallet(Money(150), [Money(1), Money(2)])
    stored = codec_for(Wallet).encode(wallet)
    assert stored == dcj_encode(wallet) == {"balance": "1.50", "history": ["0.01", "0.02"]}
    assert codec_for(Wallet).decode(stored) == dcj_decode(Wallet, stored) == Wallet("1.50", [Money(1), Money(2)])  # type: ignore[arg-type]


def test_subclass_instance_uses_its_own_codec() -> None:
    """encode of a subclass instance stores the subclass's fields."""

    @dataclass
    class BigCart(Cart):
        gift: bool = False

    big = BigCart(1, updated=datetime(2026, 1, 1), gift=True)
    assert codec_for(Cart).encode(big) == dcj_encode(big)


def test_decode_calls_the_constructor() -> None:
    """decode builds through __init__ as from_dict does: __post_init__, kw_only, init=False, custom order."""
    cases: list[tuple[type, dict[str, Any]]] = [(Lifecycle, {"a": 2, "c": 1, "computed": 99}), (Lifecycle, {"a": 3}), (Swapped, {"a": 1, "b": "x"})]
    for cls, data in cases:
        assert codec_for(cls).decode(data) == dcj_decode(cls, data)
        assert codec_for(cls).encode(codec_for(cls).decode(data)) == dcj_encode(dcj_decode(cls, data))
    assert codec_for(Lifecycle).decode({"a": 2}).computed == 4
    assert (codec_for(Swapped).decode({"a": 1, "b": "x"}).a, codec_for(Swapped).decode({"a": 1, "b": "x"}).b) == (1, "x")


# -- evolution ----------------------------------------------------------------------------


def test_old_record_gets_new_fields_defaults() -> None:
    """A record saved before fields were added decodes with their defaults (fresh per call)."""
    old = {"user_id": 3}
    first, second = codec_for(Cart).decode(old), codec_for(Cart).decode(old)
    assert (first.items, first.notes, first.coupon, first.stage) == ([], {}, None, Stage.BROWSING)
    assert first.items is not second.items
    assert first == dcj_decode(Cart, old)


def test_unknown_keys_are_ignored() -> None:
    """Keys the class doesn't know (a field since removed) are skipped without error."""
    data = {"count": 4, "removed_field": [1, 2], "another": {"x": None}}
    assert codec_for(Flat).decode(data) == Flat(4) == dcj_decode(Flat, data)


# -- errors -------------------------------------------------------------------------------


def test_encode_error_names_the_field() -> None:
    """A value that can't be stored raises EncodeError naming class, field path and type."""
    cart = Cart(1, [Item("a", "A", 1.0), Item("b", "B", 2.0), Item("c", "C", object())])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        dcj_encode(cart)
    with pytest.raises(EncodeError) as caught:
        codec_for(Cart).encode(cart)
    assert caught.value.path == "items[2].price"
    assert "Cart.items[2].price" in str(caught.value) and "object" in str(caught.value)


@pytest.mark.parametrize(
    "session, path",
    [
        (Everything(extra=[1, {"deep": [0, {1, 2}, date(2020, 1, 1)]}]), "extra[1]['deep'][2]"),
        (Everything(by_id={(1, 2): "tuple key"}), "by_id[(1, 2)]"),  # type: ignore[dict-item]
        (Everything(baskets={"x": [Item("a", "A", 1.0, qty=date.today())]}), "baskets['x'][0].qty"),  # type: ignore[arg-type]
    ],
)
def test_encode_error_paths(session: Everything, path: str) -> None:
    """Paths go through lists, dicts and nested dataclasses; dataclasses-json fails on them too."""
    with pytest.raises((TypeError, ValueError)):
        dcj_encode(session)
    with pytest.raises(EncodeError) as caught:
        codec_for(Everything).encode(session)
    assert caught.value.path == path


def test_encode_error_from_a_custom_encoder() -> None:
    """A custom encoder that raises becomes an EncodeError on that field, the cause kept."""
    with pytest.raises(EncodeError) as caught:
        codec_for(Configured).encode(Configured(chat_id=1, birthday="not a date"))  # type: ignore[arg-type]
    assert caught.value.path == "birthday"
    assert isinstance(caught.value.original_error, AttributeError)


@pytest.mark.parametrize(
    "data, path, words",
    [
        ({"user_id": 1, "items": [{"sku": "a", "title": "A", "price": 1}, {"title": "B", "price": 2}]}, "items[1].sku", "missing required field 'sku'"),
        ({"user_id": 1, "items": ["not an item"]}, "items[0]", "expected a JSON object for Item, got str"),
        ({"user_id": 1, "items": [{"sku": "a", "title": "A", "price": "cheap"}]}, "items[0].price", "ValueError"),
        ({"user_id": 1, "stage": "lost"}, "stage", "ValueError"),
        ({"user_id": 1, "updated": "yesterday"}, "updated", "TypeError"),
        ({"user_id": 1, "items": 5}, "items", "TypeError"),
        ({"items": []}, "user_id", "missing required field 'user_id'"),
        (["not", "a", "dict"], "", "expected a JSON object for Cart, got list"),
    ],
)
def test_decode_error_names_the_field(data: Any, path: str, words: str) -> None:
    """Data that doesn't fit raises DecodeError with the path, never a raw KeyError/TypeError."""
    with pytest.raises(Exception):
        dcj_decode(Cart, data)
    with pytest.raises(DecodeError) as caught:
        codec_for(Cart).decode(data)
    assert caught.value.path == path
    assert words in str(caught.value)


def test_decode_error_inside_dict_and_camel_case() -> None:
    """Paths use field names (not JSON keys) and dict keys; the message gives the JSON key."""
    with pytest.raises(DecodeError) as caught:
        codec_for(Everything).decode({"by_id": {"1": "ok", "two": "bad key"}})
    assert caught.value.path == "by_id['two']"
    with pytest.raises(DecodeError) as caught:
        codec_for(Profile).decode({"lastSeenAt": 1.0})
    assert caught.value.path == "user_name" and "'userName'" in str(caught.value)


def test_errors_in_fallback_classes_are_wrapped() -> None:
    """Classes dataclasses-json handles raise telesession's errors too."""
    with pytest.raises(DecodeError):
        codec_for(KeepsUnknown).decode({"rest": 1})
    with pytest.raises(EncodeError):
        codec_for(Exotic).encode(Exotic(pair=(1, object())))  # type: ignore[arg-type]


# -- depth, non-finite floats, generated code --------------------------------------------


def chain(length: int) -> Chain:
    """``length`` Chain links, each the ``next`` of the one before."""
    link = Chain("end")
    for i in range(length - 1):
        link = Chain(str(i), link)
    return link


def chain_data(length: int) -> dict[str, Any]:
    """The stored form of ``chain(length)``, built without recursion."""
    data: dict[str, Any] = {"name": "end", "next": None}
    for i in range(length - 1):
        data = {"name": str(i), "next": data}
    return data


def nested_list(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def nested_dict(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


DEEP = 10_000
TOO_DEEP = [  # (class, session, its stored form, the path to its first part deeper than MAX_DEPTH; the session is level 1)
    (Chain, chain(DEEP), chain_data(DEEP), ".".join(["next"] * MAX_DEPTH)),
    (Everything, Everything(extra=nested_list(DEEP)), {"extra": nested_list(DEEP)}, "extra" + "[0]" * (MAX_DEPTH - 1)),
    (Everything, Everything(extra=nested_dict(DEEP)), {"extra": nested_dict(DEEP)}, "extra" + "['a']" * (MAX_DEPTH - 1)),
    (Deep, Deep(maybe=[None, Item("a", "A", 1.0)], chain=chain(DEEP)), {"chain": chain_data(DEEP)}, "chain" + ".next" * (MAX_DEPTH - 1)),
]


@pytest.mark.parametrize("cls, session, data, path", TOO_DEEP, ids=["chain", "list", "dict", "inside"])
def test_encode_nested_too_deep(cls: type, session: Any, data: Any, path: str) -> None:
    """A session nested 10,000 deep is an EncodeError naming where it passes MAX_DEPTH, not a RecursionError."""
    limit = sys.getrecursionlimit()
    with pytest.raises(EncodeError) as caught:
        codec_for(cls).encode(session)
    assert caught.value.path == path
    assert f"more than {MAX_DEPTH} levels" in str(caught.value) and "nested too deep" in str(caught.value)
    assert isinstance(caught.value.original_error, RecursionError)
    assert sys.getrecursionlimit() == limit


@pytest.mark.parametrize("cls, session, data, path", TOO_DEEP, ids=["chain", "list", "dict", "inside"])
def test_decode_nested_too_deep(cls: type, session: Any, data: Any, path: str) -> None:
    """Data nested 10,000 deep is a DecodeError naming where it passes MAX_DEPTH, found without retrying each level."""
    with pytest.raises(DecodeError) as caught:
        codec_for(cls).decode(data)
    assert caught.value.path == path
    assert "nested too deep" in str(caught.value)


def test_too_deep_message_shortens_the_path() -> None:
    """The message shows the ends of a long path; the error's path is whole."""
    with pytest.raises(EncodeError) as caught:
        codec_for(Chain).encode(chain(DEEP))
    assert str(caught.value) == f"cannot encode Chain.next.next.next.next...next.next.next.next: nested too deep (more than {MAX_DEPTH} levels)"


def test_too_deep_error_does_not_depend_on_the_callers_stack() -> None:
    """Called from deep in the stack, encode gives the same error: the path comes from the data, not the stack."""

    def from_depth(frames: int) -> EncodeError:
        if frames:
            return from_depth(frames - 1)
        with pytest.raises(EncodeError) as caught:
            codec_for(Chain).encode(chain(DEEP))
        return caught.value

    shallow, deep = from_depth(0), from_depth(sys.getrecursionlimit() - 200)
    assert (deep.path, str(deep)) == (shallow.path, str(shallow))


def test_deeper_than_json_but_not_the_stack() -> None:
    """A chain past MAX_DEPTH that the stack holds encodes and decodes; storing it is refused, named by stored keys."""
    session = chain(MAX_DEPTH + 50)
    stored = codec_for(Chain).encode(session)
    assert codec_for(Chain).decode(stored) == session
    with pytest.raises(EncodeError) as caught:
        _json.dumps(stored, key="7")
    assert caught.value.path == ".".join(["next"] * MAX_DEPTH) and "nested too deep" in str(caught.value)


@dataclass
class Priced:
    price: float = float("nan")


@pytest.mark.parametrize(
    "session, path",
    [
        (Priced(), "price"),
        (Priced(float("-inf")), "price"),
        (Cart(1, [Item("a", "A", 1.0), Item("b", "B", float("inf"))]), "items[1].price"),
        (Everything(extra={"rates": [0.5, float("nan")]}), "extra['rates'][1]"),
    ],
)
def test_non_finite_floats_are_refused_by_encode(session: Any, path: str) -> None:
    """NaN and infinities, in a float field or anywhere in an untyped one, are refused by encode, naming the field."""
    with pytest.raises(EncodeError) as caught:
        codec_for(type(session)).encode(session)
    assert caught.value.path == path
    assert path in str(caught.value) and "which JSON can't hold" in str(caught.value)


class Halt(BaseException):
    """Passes every ``except Exception``, as KeyboardInterrupt would, so the traceback runs through generated code."""


def _halt(value: Any) -> Any:
    raise Halt(value)


@dataclass
class Halting:
    count: int = 0
    stop: int = field(default=0, metadata=config(encoder=_halt, decoder=_halt))


def test_tracebacks_show_the_generated_source() -> None:
    """A traceback through a generated function names it and shows its line, from a linecache entry."""
    with pytest.raises(Halt) as caught:
        codec_for(Halting).encode(Halting())
    text = "".join(traceback.format_exception(caught.value))
    assert "<telesession codec Halting.encode #" in text and "in encode_Halting" in text
    assert "'stop': " in text and "(obj.stop)" in text  # the generated line, one field a line
    with pytest.raises(Halt) as caught:
        codec_for(Halting).decode({"count": 1, "stop": "x"})
    text = "".join(traceback.format_exception(caught.value))
    assert "<telesession codec Halting.decode #" in text and "in decode_Halting" in text
    assert "data['stop']" in text


# -- sharing and caching ------------------------------------------------------------------


def test_decode_shares_nothing_with_the_data() -> None:
    """Mutating a decoded session (Any, bare list/dict, nested lists) never touches the input."""
    data = {"extra": {"a": [1, 2]}, "bare_list": [[1]], "bare_dict": {"k": [2]}, "grid": [[1, 2]], "baskets": {"b": []}}
    snapshot = json.loads(json.dumps(data))
    session = codec_for(Everything).decode(data)
    session.extra["a"].append(3)
    session.bare_list[0].append(9)
    session.bare_dict["k"].append(9)
    session.grid[0].append(3)
    session.baskets["b"].append(Item("x", "X", 1.0))
    assert data == snapshot


def test_encode_shares_nothing_with_the_session() -> None:
    """The stored form is a new tree: mutating the session afterwards doesn't change it."""
    session = Everything(extra={"a": [1]}, grid=[[1]])
    stored = codec_for(Everything).encode(session)
    session.extra["a"].append(2)
    session.grid[0].append(2)
    assert stored["extra"] == {"a": [1]} and stored["grid"] == [[1]]  # type: ignore[index,call-overload]


def test_codec_for_is_cached_and_thread_safe() -> None:
    """Many threads asking at once for a new class's codec all get one, complete, codec."""

    fields: list[Any] = [("items", list[Item], field(default_factory=list)), ("child", Optional[Flat], None)]
    Fresh: Any = dataclasses.make_dataclass("Fresh", fields)  # real types, not strings: a new class each run
    barrier = threading.Barrier(8)
    got: list[Codec[Any]] = []

    def ask() -> None:
        barrier.wait()
        codec: Codec[Any] = codec_for(Fresh)
        session = Fresh([Item("a", "A", 1.0)], Flat(2))
        assert codec.decode(codec.encode(session)) == session
        got.append(codec)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 8 and all(codec is got[0] for codec in got)
    assert codec_for(Fresh) is got[0]


def test_codec_for_refuses_non_dataclasses() -> None:
    """codec_for of something that isn't a dataclass type is a TypeError."""
    with pytest.raises(TypeError):
        codec_for(dict)
    with pytest.raises(TypeError):
        codec_for(Flat())  # type: ignore[arg-type]


def test_unresolvable_hints_are_a_type_error() -> None:
    """A string annotation that names nothing fails at codec_for, clearly."""

    @dataclass
    class Broken:
        thing: NoSuchType  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(TypeError, match="NoSuchType"):
        codec_for(Broken)
