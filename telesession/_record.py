"""The stored record: what a session looks like in a storage, and how it changes version.

A record is the JSON object ``{"data": ..., "schema": N, "saved_at": T}``: ``data`` is the
session in dataclasses-json's format (a plain dict for dict sessions), ``schema`` the version
of its shape (the number of migrations applied; records written before migrations existed are
0), ``saved_at`` the time of the last write in seconds since the epoch. Other fields are kept
as they are when the record is written again.

``Format`` turns a stored record into a session and a session back into a record, and says
whether anything changed; it does no I/O and knows no storage.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from ._json import _OPTIONS, dumps, dumps_unchecked, loads
from orjson import dumps as _dumps
from .codec import codec_for
from .errors import CorruptRecordError, DecodeError, EncodeError, MigrationError

__all__ = ["Format", "Loaded", "Migration", "record_problem"]

S = TypeVar("S")
Migration = Callable[[dict[str, Any]], dict[str, Any]]
LEFT_AS_IT_IS = "; it was left as it is"  # how an unreadable record's error ends (but a quarantined one is moved)

_RECORD_FIELDS = ("data", "schema", "saved_at")
_NONE: dict[str, Any] = {}  # a record's extra fields when it has none (never changed)


def record_problem(record: Any) -> str | None:
    """What makes ``record`` (a stored JSON value) not a session record, or ``None`` when it is one."""
    if type(record) is not dict or type(record.get("data")) is not dict:
        return "it is not a session record (no 'data' object)"
    version = record.get("schema", 0)
    if type(version) is not int or version < 0:
        return f"it has a bad schema version {version!r}"
    saved_at = record.get("saved_at")
    if saved_at is not None and (not isinstance(saved_at, (int, float)) or isinstance(saved_at, bool)):
        return f"its saved_at is not a time: {saved_at!r}"
    return None


class Loaded:
    """What a load found under a key: enough to decide, after the handler, what to write."""

    __slots__ = ("exists", "stored", "before", "extra", "dirty")

    def __init__(self, exists: bool, stored: dict[str, Any] | None, before: Any, extra: dict[str, Any], dirty: bool):
        self.exists = exists  # a record is stored (readable, perhaps expired)
        self.stored = stored  # the session data as stored (after migrations), None for a fresh session
        self.before = before  # what a change is measured against: the data as it came, or the JSON of a fresh session
        self.extra = extra  # fields of the record beside data/schema/saved_at, written back as they are
        self.dirty = dirty  # must be written even if the handler changed nothing (it was migrated)


L = TypeVar("L", bound=Loaded)


class Format(Generic[S]):
    """How sessions made by ``initial`` are stored: the session type, the codec, versions and expiry.

    ``initial``: a zero-argument callable making a dataclass instance or a dict (called once
    here to learn which). ``migrations``: ``{1: f1, ..., N: fN}``, each taking the data of the
    version before it; N is the current version. ``ttl``: seconds after the last save when a
    record counts as absent (``None``: never).
    """

    def __init__(self, initial: Callable[[], S], *, migrations: Mapping[int, Migration] | None = None, ttl: float | None = None):
        if not callable(initial):
            raise TypeError(
                f"initial must be a callable that makes a new session (a dataclass, or lambda: {{...}}), got {initial!r}: "
                "an instance would be shared by every chat"
            )
        self.initial = initial
        sample = initial()
        if type(sample) is dict:
            self.type: type = dict
            self._codec = None
        elif dataclasses.is_dataclass(sample) and not isinstance(sample, type):
            self.type = type(sample)
            self._codec = codec_for(self.type)
        else:
            raise TypeError(f"initial must make a dataclass instance or a dict, it made a {type(sample).__name__}")
        steps = dict(migrations or {})
        if sorted(steps) != list(range(1, len(steps) + 1)) or not all(callable(f) for f in steps.values()):
            raise ValueError(f"migrations must map 1, 2, ..., N without gaps to functions, got keys {sorted(steps)!r}")
        self.migrations = steps
        self.version = len(steps)
        if ttl is not None and not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
        self.ttl = ttl

    # -- reading ---------------------------------------------------------------------------

    def read(self, key: str, record: Any, where: object, now: float | None = None, make: type[L] = Loaded) -> tuple[S, L]:  # type: ignore[assignment]  # mypy: a default for a TypeVar
        """The session in ``record`` (what a storage returned for ``key``; ``None`` when absent),
        and what was loaded, as a ``make`` (a ``Loaded``, or a subclass the caller fills in further).

        A fresh ``initial()`` session when there is none or it expired. Raises
        ``CorruptRecordError`` for something that is not a session record, ``MigrationError``
        for a record newer than this code or a migration that failed, ``DecodeError`` for data
        that does not fit the class; ``where`` (the storage) goes into their messages, formatted only then.
        """
        if record is None:
            return self._fresh(False, make)
        if not (
            type(record) is dict
            and type(data := record.get("data")) is dict
            and (version := record.get("schema", 0)) == self.version
            and type(version) is int
            and len(record) <= 3
        ):  # not the usual record (of this version, nothing beside data/schema/saved_at): look closer
            problem = record_problem(record)
            if problem is not None:
                raise CorruptRecordError(f"session {key!r} in {where!r}: {problem}{LEFT_AS_IT_IS}", key=key, location=repr(where))
            data, version = record["data"], record.get("schema", 0)
        if self.ttl is not None and self.expired(record, now):
            return self._fresh(True, make)
        extra = {name: value for name, value in record.items() if name not in _RECORD_FIELDS} if len(record) > 3 else _NONE
        dirty = False
        if version != self.version:
            data = self._migrate(key, data, version, where)
            dirty = True
        try:
            if self._codec is None:
                # A storage returns a new value every time (its contract), so the session can be data
                # itself; its JSON now is what a change is measured against (data came from JSON:
                # nothing to refuse).
                return data, make(True, data, _dumps(data, option=_OPTIONS), extra, dirty)  # type: ignore[return-value]
            return self._codec.decode(data), make(True, data, data, extra, dirty)  # shares no list or dict with data
        except (DecodeError, EncodeError) as e:
            raise DecodeError(
                f"session {key!r} in {where!r} does not fit {self.type.__name__}: {e}{LEFT_AS_IT_IS}",
                path=getattr(e, "path", ""), key=key, original_error=e,
            ) from e

    def expired(self, record: Any, now: float | None = None) -> bool:
        """Whether ``record`` was saved longer than ``ttl`` ago (never without a ttl, or without a save time)."""
        saved_at = record.get("saved_at") if type(record) is dict else None
        if self.ttl is None or not isinstance(saved_at, (int, float)) or isinstance(saved_at, bool):
            return False
        return saved_at + self.ttl < (time.time() if now is None else now)

    def _fresh(self, exists: bool, make: type[L]) -> tuple[S, L]:
        session = self.initial()
        return session, make(exists, None, _dumps(self._encode(session), option=_OPTIONS), _NONE, False)

    def _migrate(self, key: str, data: dict[str, Any], version: int, where: object) -> dict[str, Any]:
        if version > self.version:
            raise MigrationError(
                f"session {key!r} in {where!r} was written by a newer version of the session (schema {version}; this code "
                f"knows schema {self.version} and never downgrades); the record is left as it is",
                key=key, stored_version=version, code_version=self.version,
            )
        data = loads(dumps(data, key=key))  # a copy: a migration may change what it is given
        for step in range(version + 1, self.version + 1):
            try:
                data = self.migrations[step](data)
                if type(data) is not dict:
                    raise TypeError(f"it returned a {type(data).__name__}, not a dict")
            except Exception as e:
                raise MigrationError(
                    f"session {key!r} in {where!r}: migration {step} (schema {step - 1} -> {step}) failed: {e!r}; "
                    "the record is left as it is",
                    key=key, stored_version=version, code_version=self.version, step=step, original_error=e,
                ) from e
        return data

    # -- writing ---------------------------------------------------------------------------

    def check(self, key: str, session: Any) -> None:
        """Refuse a session of the wrong type (a handler assigned one) with ``EncodeError``."""
        if type(session) is not self.type:
            raise EncodeError(f"session {key!r} must be a {self.type.__name__}, a handler set a {type(session).__name__}", key=key)

    def record(self, key: str, session: Any, loaded: Loaded) -> dict[str, Any] | None:
        """The record to write for ``session``, or ``None`` when nothing changed. ``session`` must pass ``check``.

        The record holds no NaN or infinity (the codec refuses them in a dataclass session; a dict
        session is looked through here), so a storage need not look again (``_json.vouched``).
        """
        if self._codec is None:
            data = session
        else:
            try:
                data = self._codec.encode(session)
            except EncodeError as e:
                raise EncodeError(f"session {key!r} cannot be stored: {e}", path=e.path, key=key, original_error=e) from e
        before = loaded.before
        if type(before) is bytes:  # a dict session, or a fresh one: compare the JSON
            now = dumps_unchecked(data, key=key)
            changed = now != before
            if now.find(b"null") >= 0 and self._codec is None:
                dumps(data, key=key)  # orjson wrote NaN as null: look through a dict session once, here
        else:  # a stored dataclass session (before is its stored data); the codec made plain JSON
            if not before.keys() <= data.keys():
                # Keep fields this version of the class does not know (written by a newer deploy).
                data = {**data, **{name: value for name, value in before.items() if name not in data}}
            # Unequal values are a change (NaN is unequal to all); equal ones may still differ as JSON (1 and True, 1.0).
            changed = data != before or dumps_unchecked(data, key=key) != dumps_unchecked(before, key=key)
        if not (changed or loaded.dirty):
            return None
        if loaded.extra is _NONE:
            return {"data": data, "schema": self.version, "saved_at": time.time()}
        return {**loaded.extra, "data": data, "schema": self.version, "saved_at": time.time()}

    @staticmethod
    def explain(key: str, record: dict[str, Any]) -> None:
        """Raise the ``EncodeError`` that names, by its path in the session, what JSON can't hold in ``record``.

        For a storage that refused a record: its error names the path inside the record.
        """
        dumps(record["data"], key=key)

    def _encode(self, session: Any) -> Any:
        return session if self._codec is None else self._codec.encode(session)

    def copy(self, session: S) -> S:
        """A deep copy, through the stored form (what ``get`` hands out)."""
        if self._codec is None:
            return loads(dumps(session))  # type: ignore[no-any-return]
        return self._codec.decode(self._codec.encode(session))
