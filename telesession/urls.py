"""storage_from_url: pick and configure a storage from one string (an environment variable, a CLI flag)."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

from .storage.base import SessionStorage

__all__ = ["storage_from_url", "without_password"]

_FORMS = """accepted forms:
  memory://                         MemoryStorage (lost when the process ends)
  file:///abs/dir, file:./rel/dir   FileStorage, one JSON file per session in that directory
  sqlite:///rel/path.db             SQLiteStorage, relative path (three slashes)
  sqlite:////abs/path.db            SQLiteStorage, absolute path (four slashes); ?table=name
  redis://[:password@]host[:port][/db], rediss://...
                                    RedisStorage (needs telesession[redis]);
                                    ?prefix=...&ttl=seconds&lock_lease=seconds"""


def _bad(url: str, why: str) -> ValueError:
    return ValueError(f"cannot make a session storage from {without_password(url)!r}: {why}\n{_FORMS}")


def without_password(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        return urlunsplit(parts._replace(netloc=parts.netloc.replace(":" + parts.password + "@", ":***@", 1)))
    except ValueError:
        return "<unparsable URL>"


def storage_from_url(url: str, *, create: bool = True) -> SessionStorage:
    """The storage ``url`` describes; a new, unconnected-until-used instance on each call.

    Paths are percent-decoded (``%20`` is a space) and relative ones resolve against the
    current directory now. A file or database that is not there is made, unless ``create`` is
    false: then ``FileNotFoundError`` names it (a tool that only looks must not leave an empty
    store behind a mistyped path). Unknown query parameters raise ``ValueError``, except for Redis,
    whose other parameters go to ``redis.Redis.from_url`` (``socket_timeout=5``, ...). A
    malformed URL raises ``ValueError`` listing the accepted forms; a Redis URL without
    redis-py installed raises ``ImportError`` saying to install ``telesession[redis]``.
    """
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep:
        raise _bad(url, "no scheme")
    if scheme in ("redis", "rediss"):
        return _redis(url)
    rest, _, query = rest.partition("?")
    try:
        params = {name: values[-1] for name, values in parse_qs(query, keep_blank_values=True, strict_parsing=bool(query)).items()}
    except ValueError as e:
        raise _bad(url, f"bad query string: {e}") from None
    if scheme == "memory":
        if rest not in ("", "//") or params:
            raise _bad(url, "memory:// takes no path and no parameters")
        from .storage.memory import MemoryStorage

        return MemoryStorage()
    if scheme == "file":
        if params:
            raise _bad(url, f"file URLs take no parameters, got {sorted(params)}")
        if rest.startswith("//"):
            host, slash, path = rest[2:].partition("/")
            if host not in ("", "localhost"):
                raise _bad(url, f"file URLs name no host (got {host!r}); use file:///abs/dir or file:./rel/dir")
            path = slash + path
        else:
            path = rest
        if not unquote(path):
            raise _bad(url, "no directory given")
        from .storage.file import FileStorage

        return FileStorage(_existing(unquote(path), create))
    if scheme == "sqlite":
        if not rest.startswith("///") or not rest[3:]:
            raise _bad(url, "a sqlite URL is sqlite:///rel/path.db or sqlite:////abs/path.db")
        path = unquote(rest[3:])
        if path == ":memory:":
            raise _bad(url, "an in-memory SQLite database is private to one connection; use memory://")
        table = params.pop("table", "sessions")
        if params:
            raise _bad(url, f"unknown parameters {sorted(params)} (sqlite takes table=...)")
        from .storage.sqlite import SQLiteStorage

        return SQLiteStorage(_existing(path, create), table=table)
    raise _bad(url, f"unknown scheme {scheme!r}")


def _existing(path: str, create: bool) -> str:
    if not create and not os.path.lexists(path):
        raise FileNotFoundError(f"{os.path.abspath(path)} does not exist")
    return path


def _redis(url: str) -> SessionStorage:
    # Import first: without redis-py this raises the ImportError that says what to install.
    from .storage.redis import RedisStorage

    parts = urlsplit(url)
    try:
        pairs = [(k, v) for k, v in parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)).items()]
    except ValueError as e:
        raise _bad(url, f"bad query string: {e}") from None
    ours = {k: v[-1] for k, v in pairs if k in ("prefix", "ttl", "lock_lease")}
    theirs = urlencode([(k, v[-1]) for k, v in pairs if k not in ours])
    try:
        ttl = float(ours["ttl"]) if "ttl" in ours else None
        lock_lease = float(ours.get("lock_lease", 30.0))
    except ValueError:
        raise _bad(url, "ttl and lock_lease are numbers of seconds") from None
    try:
        return RedisStorage.from_url(
            urlunsplit(parts._replace(query=theirs)), prefix=ours.get("prefix", "telesession:"), ttl=ttl, lock_lease=lock_lease
        )
    except (TypeError, ValueError) as e:
        # redis-py passes unknown query parameters on as keyword arguments: TypeError.
        raise _bad(url, str(e)) from None
