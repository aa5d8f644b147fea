"""Dataclass <-> JSON-ready value, in exactly dataclasses-json's stored format, but fast.

``codec_for(cls)`` reads the type hints and dataclasses-json configuration of ``cls`` once and
builds a plan: one small converter per field, then one straight-line function per direction
(``_compile``). Encoding is driven by the values, as dataclasses-json's is: a converter checks
that a value has the type its hint promised and otherwise hands it to ``_walk``, which redoes
``_asdict`` + ``json.dumps(cls=_ExtendedEncoder)`` value by value. Decoding mirrors
``_decode_dataclass`` branch by branch, deciding edge cases with dataclasses-json's own helpers.
Fixed-length tuples, Unions of several types, Counter, generic dataclasses (those fields), and
``undefined=...`` classes or two fields under one key (the whole class) go to dataclasses-json.
The fast paths name no fields: on any failure the slow path runs again to say where it failed;
after a RecursionError, a walk without recursion names where the session nests too deep.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import linecache
import threading
import time
import types
import typing
from collections import abc
from collections.abc import Callable
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from enum import Enum
from typing import Any, Generic, TypeVar, Union
from uuid import UUID

from dataclasses_json import cfg
from dataclasses_json import core as _dcj_core
from dataclasses_json import utils as _dcj_utils

from ._json import MAX_DEPTH, joined_path, shown_path
from .errors import DecodeError, EncodeError

__all__ = ["Codec", "JSONValue", "codec_for"]

T = TypeVar("T")
_E = TypeVar("_E", EncodeError, DecodeError)
JSONValue = Union[dict[str, Any], list[Any], str, int, float, bool, None]
Fn = Callable[[Any], Any]
# dataclasses-json's own helpers, so that every edge case is decided as there (untyped).
dcj: Any = _dcj_core
dcj_utils: Any = _dcj_utils
_MISSING: Any = object()
_PLAIN = frozenset({str, int, float, bool, type(None)})  # stored exactly as they are
_SEQUENCES = frozenset({list, tuple, set, frozenset})  # what _asdict turns into a list
_SEQUENCE_HINTS = {list, tuple, set, frozenset, abc.Collection, abc.Sequence, abc.MutableSequence, abc.Set, abc.MutableSet}


class _Never:
    """A type no value has: the "keep as is" type of a converter that always runs."""


class _Trail(Exception):
    """An error on its way up to ``encode``/``decode``, collecting where it happened."""

    def __init__(self, reason: str, error: BaseException | None = None) -> None:
        super().__init__(reason)
        self.reason, self.error, self.segments = reason, error, list[str]()  # innermost first


def _trail(error: BaseException, segment: str) -> _Trail:
    trail = error if isinstance(error, _Trail) else _Trail(f"{type(error).__name__}: {error}", error)
    if segment:
        trail.segments.append(segment)
    return trail


def _copy(value: Any) -> Any:
    """A copy of a JSON value that shares no list or dict with it."""
    if type(value) is list:
        return [_copy(x) for x in value]
    if type(value) is dict:
        return {k: _copy(x) for k, x in value.items()}
    return value


# -- encoding -------------------------------------------------------------------------------


def _finite(v: float) -> float:
    """``v``, a float JSON can hold; NaN and infinities are refused (orjson would write null)."""
    if v - v == 0.0:
        return v
    raise _Trail(f"{'NaN' if v != v else 'Infinity' if v > 0 else '-Infinity'}, which JSON can't hold")


def _walk(v: Any) -> Any:
    """What dataclasses-json stores for ``v``: its ``_asdict`` step, then the JSON step."""
    t = type(v)
    encoders = cfg.global_config.encoders
    if t in _PLAIN and t not in encoders:
        return v if t is not float else _finite(v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return codec_for(t)._encode_slow(v)
    if isinstance(v, abc.Mapping):
        return _each_pair(v, _walk_key, _walk)
    if isinstance(v, abc.Collection) and not isinstance(v, (str, bytes, Enum)):
        return _each(v, _walk)
    return _jsonify(encoders[t](v) if t in encoders else v)


def _jsonify(o: Any) -> Any:
    """What ``json.loads(json.dumps(o, cls=_ExtendedEncoder))`` gives, without the text between."""
    if o is None or o is True or o is False:
        return o
    if isinstance(o, str):  # subclasses (str enums) are written as their text, like json does
        return str.__str__(o)
    if isinstance(o, int):
        return int.__index__(o)
    if isinstance(o, float):  # NaN and inf refused: orjson would write them as null, json as NaN/Infinity
        return _finite(float.__float__(o))
    if isinstance(o, (list, tuple)):
        return _each(o, _jsonify)
    if isinstance(o, dict):
        return _each_pair(o, _json_key, _jsonify)
    # From here on: _ExtendedEncoder.default, in its order.
    if isinstance(o, abc.Collection):
        return _jsonify(dict(o) if isinstance(o, abc.Mapping) else list(o))
    if isinstance(o, datetime):
        return o.timestamp()
    if isinstance(o, UUID):
        return str(o)
    if isinstance(o, Enum):
        return _jsonify(o.value)
    if isinstance(o, Decimal):
        return str(o)
    raise _Trail(f"a value of type {type(o).__qualname__} is not JSON-serializable (nor for dataclasses-json)")


def _json_key(k: Any) -> str:
    """A dict key as json.dumps writes it; the same keys fail."""
    if isinstance(k, str):
        return str.__str__(k)
    if isinstance(k, float):
        return json.dumps(float.__float__(k))
    if k is None or k is True or k is False:
        return json.dumps(k)
    if isinstance(k, int):
        return int.__repr__(k)
    raise _Trail(f"a key of type {type(k).__qualname__} can't be a JSON object key (only str, int, float, bool, None)")


def _walk_key(k: Any) -> str:
    """A dict key as dataclasses-json stores it: a global encoder for its type, then json's rules."""
    encoder = cfg.global_config.encoders.get(type(k))
    return _json_key(k if encoder is None else encoder(k))


def _each(items: abc.Iterable[Any], fn: Fn) -> list[Any]:
    out = []
    for i, x in enumerate(items):
        try:
            out.append(fn(x))
        except Exception as e:
            raise _trail(e, f"[{i}]")
    return out


def _each_pair(mapping: abc.Mapping[Any, Any], key: Fn, fn: Fn) -> dict[str, Any]:
    out = {}
    for k, x in mapping.items():
        try:
            out[key(k)] = fn(x)
        except Exception as e:
            raise _trail(e, f"[{k!r}]")
    return out


def _encoder(tp: Any) -> tuple[Any, Fn]:
    """``(exact, fn)`` for a hint: a value of type ``exact`` is stored as is, ``fn(v) == _walk(v)``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _registered(tp, cfg.global_config.encoders) or type(None) in cfg.global_config.encoders:
        return _Never, _walk
    if tp in (str, int, bool):
        return tp, _walk
    if tp is float:  # not stored as is unchecked: the value must be finite (see _finite)
        return _Never, _walk
    if tp in (datetime, UUID, Decimal):
        conv: Fn = datetime.timestamp if tp is datetime else str
        return _Never, lambda v: conv(v) if type(v) is tp else _walk(v)
    if isinstance(tp, type) and issubclass(tp, Enum):
        stored: dict[Any, Any] | None = None
        try:
            stored = {member: _walk(member) for member in tp}
        except Exception:
            pass  # a member that can't be stored fails when (if) it is encoded
        if stored is not None and all(type(s) in _PLAIN for s in stored.values()):  # no shared lists
            return _Never, lambda v: stored[v] if type(v) is tp else _walk(v)
    elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
        nested = codec_for(tp)._encode
        return _Never, lambda v: nested(v) if type(v) is tp else _walk(v)
    elif origin in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        exact, inner = _encoder(args[1] if args[0] is type(None) else args[0])
        return exact, lambda v: None if v is None else inner(v)
    elif (origin or tp) in _SEQUENCE_HINTS:
        ex, fn = _encoder(args[0] if len(args) == 1 or args[1:] == (...,) else Any)
        return _Never, lambda v: [x if type(x) is ex else fn(x) for x in v] if type(v) in _SEQUENCES else _walk(v)
    elif (origin or tp) in (dict, abc.Mapping, abc.MutableMapping):
        ex, fn = _encoder(args[1] if args else Any)
        kx = _Never if str in cfg.global_config.encoders else str
        return _Never, lambda v: (
            {(k if type(k) is kx else _walk_key(k)): (x if type(x) is ex else fn(x)) for k, x in v.items()}
            if type(v) is dict
            else _walk(v)
        )
    return _Never, _walk


def _registered(tp: Any, table: dict[Any, Any]) -> bool:
    try:
        return tp in table
    except TypeError:  # an unhashable hint
        return False


# -- decoding -------------------------------------------------------------------------------


def _decoder(tp: Any, nested: bool) -> tuple[Any, Fn]:
    """``(exact, fn)`` for a hint: data of type ``exact`` is kept as is, else ``fn(data)``.

    ``nested``: dataclasses-json's ``_decode_type`` (list items, dict values, Optional's inside),
    which checks global decoders first and turns None into None only for generic hints; else its
    per-field branch, which never sees None.
    """
    if nested and _registered(tp, cfg.global_config.decoders):
        decode = cfg.global_config.decoders[tp]
        return _Never, lambda v: decode(_copy(v))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _Never, codec_for(tp)._decode
    if dcj._is_supported_generic(tp) and tp is not str:
        return _generic_decoder(tp)
    # dataclasses-json's _support_extended_types; whatever is none of these is kept as it is.
    if dcj_utils._issubclass_safe(tp, datetime):
        return _Never, lambda v: v if isinstance(v, datetime) else datetime.fromtimestamp(v, tz=_local_tz())
    for special in (Decimal, UUID):
        if dcj_utils._issubclass_safe(tp, special):
            return _Never, lambda v, s=special: v if isinstance(v, s) else s(v)
    if dcj_utils._issubclass_safe(tp, (int, float, str, bool)):  # "5" becomes 5 in an int field
        return (tp if tp in (int, float, str, bool) else _Never), lambda v: v if isinstance(v, tp) else tp(v)
    return _Never, _copy


def _generic_decoder(tp: Any) -> tuple[Any, Fn]:
    """dataclasses-json's ``_decode_generic``: None stays None, a new container every call."""
    fallback: Fn = lambda v: dcj._decode_generic(tp, _copy(v), False)  # noqa: E731
    if dcj_utils._issubclass_safe(tp, Enum):
        members = getattr(tp, "_value2member_map_", {})  # where Enum's own lookup starts; 10x faster

        def decode_enum(v: Any) -> Any:
            member = members.get(v, _MISSING) if type(v) in _PLAIN and v is not None else _MISSING
            return member if member is not _MISSING else None if v is None else tp(v)

        return _Never, decode_enum
    if dcj_utils._is_collection(tp):
        make = getattr(tp, "__origin__", tp)  # what dataclasses-json calls on the list of items
        make = getattr(dcj, "collections_abc_type_to_implementation_type", {}).get(make, make)  # >= 0.6.5
        if dcj_utils._is_counter(tp):
            return _Never, fallback
        if dcj_utils._is_mapping(tp):
            k_type, v_type = dcj_utils._get_type_args(tp, (Any, Any))
            if make is not dict or typing.get_origin(k_type) is tuple:
                return _Never, fallback
            vx, vf = _decoder(v_type, nested=True)
            key: Fn
            if k_type is None or k_type is Any or isinstance(k_type, TypeVar):
                kx, key = str, _copy  # JSON keys are str; the rest is kept as is
            else:  # dataclasses-json decodes a key, then calls its type on it: int("1"), Color("red")
                kx, kf = _decoder(k_type, nested=True)
                key = lambda k: k_type(kf(k))  # noqa: E731

            def decode_mapping(v: Any) -> Any:
                if v is None:
                    return None
                try:
                    return {(k if type(k) is kx else key(k)): x if type(x) is vx else vf(x) for k, x in v.items()}
                except Exception as e:
                    raise _locate(e, v, vf, key) from None

            return _Never, decode_mapping
        args = dcj_utils._get_type_args(tp)
        if dcj_utils._is_tuple(tp) and args and Ellipsis not in args:
            return _Never, fallback  # fixed-length tuples: dataclasses-json checks the length
        item = dcj_utils._get_type_arg_param(tp, 0)
        ix, ifn = (_Never, _copy) if item is dcj_utils._NO_ARGS else _decoder(item, nested=True)

        def decode_items(v: Any) -> Any:
            if v is None:
                return None
            try:  # like dataclasses-json, iterates whatever it gets: a str gives its characters
                items = [x if type(x) is ix else ifn(x) for x in v]
                return items if make is list else make(items)
            except Exception as e:
                raise _locate(e, v, ifn) from None

        return _Never, decode_items
    args = dcj_utils._get_type_args(tp)
    if args is dcj_utils._NO_ARGS:  # Any
        return _Never, _copy
    if dcj_utils._is_optional(tp) and len(args) == 2:  # dataclasses-json decodes as its FIRST argument
        exact, inner = _decoder(dcj_utils._get_type_arg_param(tp, 0), nested=True)
        return exact, lambda v: None if v is None else inner(v)
    return _Never, fallback  # other Unions, generic dataclasses


def _locate(error: Exception, v: Any, fn: Fn, key: Fn | None = None) -> _Trail:
    """Name the item that made a comprehension fail by decoding again one item at a time."""
    if isinstance(error, RecursionError):  # again would fail as deep, at every level on the way up
        return _trail(error, "")
    try:
        for k, x in v.items() if key else enumerate(v):
            try:
                if key:
                    key(k)
                fn(x)
            except Exception as e:
                return _trail(e, f"[{k!r}]")
    except Exception:
        pass  # not iterable at all: the field itself is wrong
    return _trail(error, "")


_zone: tuple[float, object, tzinfo] = (0.0, None, timezone.utc)  # (valid until, time.tzname, zone)


def _local_tz() -> tzinfo:
    """The zone dataclasses-json gives decoded datetimes: the local offset in force NOW (not at
    the timestamp), as ``datetime.now(timezone.utc).astimezone().tzinfo`` builds it.

    Cached until the next quarter hour of UTC (every zone in use changes its offset only at such
    instants) or until ``time.tzset()`` replaces ``time.tzname``: ``time.localtime()`` costs more
    than the rest of a datetime's decoding.
    """
    global _zone
    until, names, zone = _zone
    now = time.time()
    if now < until and time.tzname is names:
        return zone
    names, local = time.tzname, time.localtime(now)
    zone = timezone(timedelta(seconds=local.tm_gmtoff), local.tm_zone)
    _zone = ((now // 900 + 1) * 900, names, zone)
    return zone


# -- straight-line fast paths ----------------------------------------------------------------
#
# A codec's fast encode and decode are one generated function each, in which nested
# dataclasses, lists, dicts and Optionals are written out as expressions instead of calls.
# Each expression equals its hint's converter above (``_encoder``/``_decoder``) for every
# value: it handles the usual shape itself and hands anything else to that converter.

_INLINE_DEPTH = 4  # nested dataclasses written out inside one function; deeper ones are called
_FIELD_BREAK = ",\n        "  # one field a line: a traceback's line then names the field


class _Source:
    """The names a generated function refers to, and fresh variable names for it."""

    def __init__(self, **names: Any) -> None:
        self.names = names
        self._count = itertools.count()

    def ref(self, value: Any) -> str:
        name = f"_{next(self._count)}"
        self.names[name] = value
        return name

    def var(self) -> str:
        return f"v{next(self._count)}"

    def function(self, cls: type, verb: str, parameter: str, body: str) -> Fn:
        """``def {verb}_{Class}({parameter}):`` then ``body``, compiled under a pseudo-filename
        (``<telesession codec Cart.encode #1>``) whose source linecache holds, so that tracebacks,
        debuggers and profilers show the generated lines and a readable name.
        """
        name = f"{verb}_{cls.__name__}" if cls.__name__.isidentifier() else verb
        source = f"def {name}({parameter}):\n{body}\n"
        filename = f"<telesession codec {cls.__qualname__}.{verb} #{next(_generated)}>"  # unique: names repeat
        # mtime None: linecache.checkcache(), which every traceback calls, keeps the entry.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), self.names)
        return self.names[name]  # type: ignore[no-any-return]


_generated = itertools.count(1)  # numbers the pseudo-filenames (codecs are built under _build_lock)


def _bail() -> Any:
    raise LookupError("not the usual shape")  # a fast path gives up: the reference path runs


def _encode_inline(src: _Source, tp: Any, v: str, first: str, inlined: tuple[type, ...], none: bool = False) -> str:
    """An expression whose value is ``_encoder(tp)[1](v)``; ``first`` is ``v``'s first mention (it may bind ``v``).

    ``none``: the value may be None, which is stored as None (an Optional's inside).
    """
    exact, fn = _encoder(tp)
    call = f"(None if {v} is None else {src.ref(fn)}({v}))" if none else f"{src.ref(fn)}({v})"
    encoders = cfg.global_config.encoders
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _registered(tp, encoders) or type(None) in encoders:
        pass
    elif origin in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        return _encode_inline(src, args[1] if args[0] is type(None) else args[0], v, first, inlined, none=True)
    elif exact is not _Never:
        return f"{v} if type({first}) is {src.ref(exact)} else {call}"
    elif tp is float:  # a finite float as is (v - v is 0.0 for those only); anything else by the converter
        return f"{v} if type({first}) is float and {v} - {v} == 0.0 else {call}"
    elif tp is datetime:
        return f"{src.ref(datetime.timestamp)}({v}) if type({first}) is {src.ref(datetime)} else {call}"
    elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
        codec = codec_for(tp)
        if codec._inline_encode and tp not in inlined and len(inlined) < _INLINE_DEPTH:
            fields = codec._fields_expr(src, v, (*inlined, tp))
        else:  # looked up at each call: a class that contains itself gets its compiled encoder once built
            fields = f"{src.ref(codec)}._encode({v})"
        return f"{fields} if type({first}) is {src.ref(tp)} else {call}"
    elif (origin or tp) in _SEQUENCE_HINTS:
        item, x = args[0] if len(args) == 1 or args[1:] == (...,) else Any, src.var()
        return f"[{_encode_inline(src, item, x, x, inlined)} for {x} in {v}] if type({first}) in {src.ref(_SEQUENCES)} else {call}"
    elif (origin or tp) in (dict, abc.Mapping, abc.MutableMapping):
        k, x = src.var(), src.var()
        key = f"{src.ref(_walk_key)}({k})" if str in encoders else f"{k} if type({k}) is str else {src.ref(_walk_key)}({k})"
        value = _encode_inline(src, args[1] if args else Any, x, x, inlined)
        return f"{{({key}): {value} for {k}, {x} in {v}.items()}} if type({first}) is dict else {call}"
    return f"None if {first} is None else {src.ref(fn)}({v})" if none else f"{src.ref(fn)}({first})"


def _decode_inline(src: _Source, tp: Any, v: str, first: str, nested: bool, inlined: tuple[type, ...], none: bool = False) -> str:
    """An expression whose value is ``_decoder(tp, nested)[1](v)``, or that raises where that one would.

    ``none``: None decodes to None (a field's value, an Optional's inside).
    """
    exact, fn = _decoder(tp, nested)
    call = f"(None if {v} is None else {src.ref(fn)}({v}))" if none else f"{src.ref(fn)}({v})"
    if nested and _registered(tp, cfg.global_config.decoders):
        pass
    elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
        codec = codec_for(tp)
        if codec._inline_decode and tp not in inlined and len(inlined) < _INLINE_DEPTH:
            return f"{codec._construct_expr(src, v, (*inlined, tp))} if type({first}) is dict else {call}"
        return f"None if {first} is None else {src.ref(codec)}._decode({v})" if none else f"{src.ref(codec)}._decode({first})"
    elif dcj._is_supported_generic(tp) and tp is not str:
        args = dcj_utils._get_type_args(tp)
        if dcj_utils._issubclass_safe(tp, Enum) or not dcj_utils._is_collection(tp):
            if dcj_utils._is_optional(tp) and args is not dcj_utils._NO_ARGS and len(args) == 2:
                return _decode_inline(src, dcj_utils._get_type_arg_param(tp, 0), v, first, True, inlined, none=True)
        elif getattr(tp, "__origin__", tp) in (list, dict) and not dcj_utils._is_counter(tp):
            x = src.var()
            if dcj_utils._is_mapping(tp):
                k_type, v_type = dcj_utils._get_type_args(tp, (Any, Any))
                if k_type in (None, Any, str) or isinstance(k_type, TypeVar):  # str keys stay as they are
                    k, value = src.var(), _decode_inline(src, v_type, x, x, True, inlined)
                    return f"{{({k} if type({k}) is str else {src.ref(_bail)}()): {value} for {k}, {x} in {v}.items()}} if type({first}) is dict else {call}"
            elif not dcj_utils._is_tuple(tp):
                item = dcj_utils._get_type_arg_param(tp, 0)
                value = f"{src.ref(_copy)}({x})" if item is dcj_utils._NO_ARGS else _decode_inline(src, item, x, x, True, inlined)
                return f"[{value} for {x} in {v}] if type({first}) is list else {call}"
    elif dcj_utils._issubclass_safe(tp, datetime):
        return f"{src.ref(datetime.fromtimestamp)}({v}, {src.ref(_local_tz)}()) if type({first}) is float else {call}"
    elif exact is not _Never:
        return f"{v} if type({first}) is {src.ref(exact)} else {call}"
    return f"None if {first} is None else {src.ref(fn)}({v})" if none else f"{src.ref(fn)}({first})"


# -- the codec ------------------------------------------------------------------------------


def _field_encoder(tp: Any, encoder: Fn | None, exclude: Fn | None) -> tuple[Any, Fn, Fn | None]:
    """``(exact, fn, exclude)`` of a field, with its ``config(encoder=..., exclude=...)``."""
    if exclude is not None and encoder is None:  # the predicate sees the _asdict form
        predicate = exclude
        exclude = lambda v: predicate(v if type(v) in _PLAIN else dcj._asdict(v))  # noqa: E731
    if encoder is not None:
        custom = encoder
        return _Never, lambda v: _jsonify(custom(v)), exclude
    return (*_encoder(tp), exclude)


def _field_decoder(tp: Any, decoder: Fn | None) -> tuple[Any, Fn]:
    """``(exact, fn)`` of a field, with its ``config(decoder=...)``; fn never sees None."""
    while dcj_utils._is_new_type(tp):  # NewType is a function before Python 3.10
        tp = tp.__supertype__
    if decoder is None:
        return _decoder(tp, nested=False)
    custom = decoder  # dataclasses-json skips the decoder when the type already fits
    return _Never, lambda v: v if type(v) is tp else custom(_copy(v))


def _positional_parameters(cls: type) -> list[str]:
    """The leading positional parameters of ``cls.__init__``: passing those by position halves
    the cost of the call. A custom __init__ gets them only where its names match the fields."""
    try:
        parameters = list(inspect.signature(getattr(cls, "__init__")).parameters.values())[1:]
    except (TypeError, ValueError):
        return []
    return [p.name for p in itertools.takewhile(lambda p: p.kind is p.POSITIONAL_OR_KEYWORD, parameters)]


def _too_deep(value: Any, hint: Any) -> list[str] | None:
    """The path segments to the first dataclass, mapping or collection in ``value`` nested more
    than MAX_DEPTH deep (stored, that is more than JSON holds); None if there is none.

    Depth first, with a stack instead of recursion: this runs after recursion failed.
    """
    open_items = [iter([("", value, hint)])]
    path: list[str] = []  # where the current item is: its segment in each open container
    while open_items:
        following = next(open_items[-1], None)
        if following is None:
            open_items.pop()
            continue
        del path[len(open_items) - 1 :]
        segment, item, tp = following
        path.append(segment)
        inside = _inside(item, tp)
        if inside is not None:
            if len(open_items) > MAX_DEPTH:
                return path[1:]  # without the "" of ``value`` itself
            open_items.append(inside)
    return None


def _inside(value: Any, tp: Any) -> abc.Iterator[tuple[str, Any, Any]] | None:
    """The parts of ``value`` as (segment, part, its hint), named as errors name them; None for a leaf.

    ``value`` is a session object (encoding: ``tp`` is Any) or data for hint ``tp`` (decoding).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return ((f".{f.name}", getattr(value, f.name, None), Any) for f in dataclasses.fields(value))
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        tp = args[0] if args[1] is type(None) else args[1]
        args = typing.get_args(tp)
    if type(value) is dict and isinstance(tp, type) and dataclasses.is_dataclass(tp) and codec_for(tp)._decode_plan:
        return ((f".{name}", value[key], hint) for name, key, *_, hint in codec_for(tp)._decode_plan if key in value)
    if isinstance(value, abc.Mapping):
        return ((f"[{k!r}]", x, args[-1] if args else Any) for k, x in value.items())
    if isinstance(value, abc.Collection) and not isinstance(value, (str, bytes, Enum)):
        return ((f"[{i}]", x, args[0] if args else Any) for i, x in enumerate(value))
    return None


class Codec(Generic[T]):
    """Encodes and decodes one dataclass in dataclasses-json's format; get it from ``codec_for``."""

    def __init__(self, cls: type[T]) -> None:
        self.cls = cls
        # _encode/_decode: the fastest version there is; _encode_slow: the reference, naming
        # fields in errors (the fast encoders name nothing: encode() walks again on failure).
        self._encode: Callable[[T], dict[str, Any]] = self._encode_loop
        self._encode_slow: Callable[[T], dict[str, Any]] = self._encode_walk
        self._decode: Callable[[Any], T] = self._decode_loop
        # Per field: (name, key, exact, fn, exclude, custom encoder, hint) and, for fields of
        # __init__, (name, key, other key, exact, fn, required, hint or None with a custom decoder).
        self._encode_plan: list[tuple[str, str, Any, Fn, Fn | None, Fn | None, Any]] = []
        self._decode_plan: list[tuple[str, str | None, str | None, Any, Fn, bool, Any]] = []
        self._by_position = 0  # how many leading fields __init__ takes by position
        # Whether another codec's generated code may write this one's fields out in place.
        self._inline_encode = self._inline_decode = False

    def __repr__(self) -> str:
        return f"codec_for({self.cls.__qualname__})"

    def encode(self, value: T) -> dict[str, Any]:
        """``json.loads(value.to_json())`` of dataclasses-json, made directly: a dict of plain JSON types.

        A dataclass of another type is encoded with its own codec. Raises EncodeError, whose
        ``path`` names the field (``items[2].price``), for a value dataclasses-json can't store,
        and for one nested too deep for the stack (``path``: its first part nested more than
        MAX_DEPTH deep, never a RecursionError). NaN and infinities pass: ``_json.dumps`` refuses them.
        """
        if type(value) is not self.cls:
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                return codec_for(type(value)).encode(value)
            raise EncodeError(f"codec_for({self.cls.__qualname__}) can't encode a {type(value).__qualname__}")
        try:
            return self._encode(value)
        except Exception:
            pass  # the fast path knows no field paths: walk again (the reference), which does
        try:
            return self._encode_slow(value)
        except Exception as e:
            error = self._error(EncodeError, "encode", e, value, Any)
        raise error from error.original_error

    def decode(self, data: JSONValue) -> T:
        """What dataclasses-json's ``from_dict(data)`` returns, sharing no list or dict with ``data``.

        Missing fields get their defaults, unknown keys are ignored, a null is kept as None
        (dataclasses-json only warns). Raises DecodeError with the field ``path`` when ``data``
        doesn't fit: not an object, a required field missing, a value its type rejects, nesting
        too deep for the stack (named as in ``encode``).
        """
        try:
            if data is None:
                raise self._not_an_object(data)
            return self._decode(data)
        except Exception as e:
            error = self._error(DecodeError, "decode", e, data, self.cls)
        raise error from error.original_error

    def _error(self, kind: type[_E], verb: str, error: Exception, value: Any, hint: Any) -> _E:
        """The EncodeError or DecodeError for ``error``, raised in encoding or decoding ``value``.

        A RecursionError is named by where ``value`` nests more than MAX_DEPTH deep, found
        without recursion (the trail it left depends on how deep the caller's stack was).
        """
        trail = _trail(error, "")
        segments, reason = trail.segments[::-1], trail.reason
        if isinstance(trail.error, RecursionError):
            try:
                deep = _too_deep(value, hint)
            except Exception:  # a part that fails even to be looked at: keep the trail's path
                deep = None
            if deep is not None:
                segments, reason = deep, f"nested too deep (more than {MAX_DEPTH} levels)"
            else:  # a caller deep in the stack, or a custom encoder, decoder or __init__ recursing
                reason = f"nested too deep for the stack left ({reason})"
        where = ".".join(filter(None, [self.cls.__qualname__, shown_path(segments)]))
        return kind(f"cannot {verb} {where}: {reason}", path=joined_path(segments), original_error=trail.error)

    def _build(self) -> None:
        cls = self.cls
        overrides = dcj._user_overrides_or_exts(cls)
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        keys = {f.name: overrides[f.name].letter_case(f.name) if overrides[f.name].letter_case else f.name for f in fields}
        if dcj_utils._undefined_parameter_action_safe(cls) is not None or len(set(keys.values())) < len(keys):
            # undefined=... (catch-all fields), or two fields under one key (dataclasses-json
            # raises ValueError when encoding): let dataclasses-json do all of it.
            self._encode = self._encode_slow = self._encode_dcj
            self._decode = self._decode_dcj
            return
        try:
            hints = typing.get_type_hints(cls)
        except Exception as e:
            raise TypeError(f"cannot resolve the type hints of {cls.__qualname__}: {e}") from e
        renamed = {keys[f.name]: f.name for f in fields if overrides[f.name].letter_case}  # last one wins, as there
        for f in fields:
            o, hint = overrides[f.name], hints[f.name]
            exact, fn, exclude = _field_encoder(hint, o.encoder, o.exclude)
            self._encode_plan.append((f.name, keys[f.name], exact, fn, exclude, o.encoder, hint))
            if not f.init:
                continue
            # The keys data can give this field in: its cased key, its own name unless that
            # name is another field's cased key. With both present, the later one wins.
            sources = list(dict.fromkeys([k for k, n in renamed.items() if n == f.name] + [f.name] * (f.name not in renamed)))
            exact, fn = _field_decoder(hint, o.decoder)
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            while dcj_utils._is_new_type(hint):
                hint = hint.__supertype__
            plan = (f.name, (sources or [None])[0], (sources[1:] or [None])[0], exact, fn, required, None if o.decoder else hint)
            self._decode_plan.append(plan)
        names = [name for name, *_ in self._decode_plan]
        self._by_position = len(list(itertools.takewhile(lambda pair: pair[0] == pair[1], zip(names, _positional_parameters(cls)))))
        self._compile()

    def _compile(self) -> None:
        """The fast paths: the loops below written out as one function per direction, with
        nested dataclasses, lists, dicts and Optionals inline (see ``_encode_inline``).

        Decoding goes back to the loop on any failure (a field absent, bad data): it names the
        field, or fills the default as the dataclass would (a custom __init__ may differ).
        """
        cls = self.cls
        if all(exclude is None for _, _, _, _, exclude, _, _ in self._encode_plan):
            src = _Source()
            self._encode = src.function(cls, "encode", "obj", f"    return {self._fields_expr(src, 'obj', (cls,))}")
            self._inline_encode = True
        if all(alt is None for _, _, alt, *_ in self._decode_plan):
            src = _Source(loop=self._decode_loop)
            construct = self._construct_expr(src, "data", (cls,))
            # No second try after a RecursionError: each level would retry the levels below it.
            body = f"    try:\n        return {construct}\n    except RecursionError:\n        raise\n    except Exception:\n        return loop(data)"
            self._decode = src.function(cls, "decode", "data", body)
            self._inline_decode = True

    def _fields_expr(self, src: _Source, obj: str, inlined: tuple[type, ...]) -> str:
        """A dict display of the stored form of the instance in variable ``obj``."""
        items = []
        for name, key, _, fn, _, encoder, hint in self._encode_plan:
            v = src.var()
            if encoder is None:
                items.append(f"{key!r}: {_encode_inline(src, hint, v, f'({v} := {obj}.{name})', inlined)}")
            else:
                items.append(f"{key!r}: {src.ref(fn)}({obj}.{name})")
        return f"{{{_FIELD_BREAK.join(items)}}}"

    def _construct_expr(self, src: _Source, data: str, inlined: tuple[type, ...]) -> str:
        """A constructor call decoding the dict in variable ``data``; an absent key raises KeyError."""
        args = []
        for i, (name, key, _, _, fn, _, hint) in enumerate(self._decode_plan):
            v = src.var()
            first = f"({v} := {data}[{key!r}])"
            if hint is None:  # a custom decoder
                value = f"None if {first} is None else {src.ref(fn)}({v})"
            else:
                value = _decode_inline(src, hint, v, first, False, inlined, none=True)
            args.append(f"{'' if i < self._by_position else name + '='}{value}")
        return f"{src.ref(self.cls)}({_FIELD_BREAK.join(args)})"

    def _encode_loop(self, obj: T) -> dict[str, Any]:
        out = {}
        for name, key, exact, fn, exclude, _, _ in self._encode_plan:
            v = getattr(obj, name)
            if exclude is not None and exclude(v):
                continue
            out[key] = v if type(v) is exact else fn(v)
        return out

    def _encode_walk(self, obj: T) -> dict[str, Any]:
        out = {}
        for name, key, _, _, exclude, encoder, _ in self._encode_plan:
            try:
                v = getattr(obj, name)
                if exclude is None or not exclude(v):
                    out[key] = _walk(v) if encoder is None else _jsonify(encoder(v))
            except Exception as e:
                raise _trail(e, "." + name) from None
        return out

    def _decode_loop(self, data: Any) -> T:
        if not isinstance(data, dict):
            if data is None:  # a dataclass in a list, a dict, an Optional: dataclasses-json keeps None
                return None  # type: ignore[return-value]
            raise self._not_an_object(data)
        kwargs = {}
        for name, key, alt, exact, fn, required, _ in self._decode_plan:
            v = data.get(key, _MISSING)
            if alt is not None and alt in data:
                v = data[next(k for k in reversed(data) if k == key or k == alt)]
            if v is _MISSING:
                if required:
                    raise _trail(_Trail(f"missing required field {name!r}" + f" (key {key!r})" * (key != name)), "." + name)
            elif v is None or type(v) is exact:
                kwargs[name] = v
            else:
                try:
                    kwargs[name] = fn(v)
                except Exception as e:
                    raise _trail(e, "." + name) from None
        return self.cls(**kwargs)

    def _not_an_object(self, data: Any) -> _Trail:
        return _Trail(f"expected a JSON object for {self.cls.__qualname__}, got {type(data).__name__}")

    def _encode_dcj(self, obj: T) -> dict[str, Any]:
        # allow_nan=False: NaN and infinities are refused here too, as everywhere else.
        return json.loads(json.dumps(dcj._asdict(obj), cls=dcj._ExtendedEncoder, allow_nan=False))  # type: ignore[no-any-return]

    def _decode_dcj(self, data: Any) -> T:
        if not isinstance(data, dict):
            if data is None:  # a dataclass in a list, a dict, an Optional: dataclasses-json keeps None
                return None  # type: ignore[return-value]
            raise self._not_an_object(data)
        return dcj._decode_dataclass(self.cls, _copy(data), False)  # type: ignore[no-any-return]


_codecs: dict[type, Codec[Any]] = {}
_building: dict[type, Codec[Any]] = {}  # this build's codecs: a class can refer to itself
_build_lock = threading.RLock()


def codec_for(cls: type[T]) -> Codec[T]:
    """The codec of dataclass ``cls``: built on first use, then cached; safe from any thread.

    ``dataclasses_json.cfg.global_config`` is read when the codec is built: register global
    encoders and decoders before first use. Raises TypeError if ``cls`` is not a dataclass or
    its type hints (strings under ``from __future__ import annotations``) don't resolve.
    """
    codec = _codecs.get(cls)
    if codec is not None:
        return codec
    with _build_lock:  # one builder at a time; published only once complete
        codec = _codecs.get(cls) or _building.get(cls)
        if codec is not None:
            return codec
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise TypeError(f"codec_for needs a dataclass, got {cls!r}")
        outermost = not _building
        codec = _building[cls] = Codec(cls)
        try:
            codec._build()
            if outermost:
                _codecs.update(_building)
        finally:
            if outermost:
                _building.clear()
        return codec
