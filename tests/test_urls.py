"""storage_from_url: each accepted form gives the right storage at the right place; bad URLs say what is accepted."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from telesession.storage.base import SessionStorage
from telesession.urls import storage_from_url


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def made() -> Iterator[list[SessionStorage]]:
    storages: list[SessionStorage] = []
    yield storages
    for storage in storages:
        storage.close()


def make(url: str, made: list[SessionStorage]) -> SessionStorage:
    storage = storage_from_url(url)
    made.append(storage)
    return storage


def test_memory(made: list[SessionStorage]) -> None:
    """memory:// is a fresh MemoryStorage each time."""
    from telesession.storage.memory import MemoryStorage

    first, second = make("memory://", made), make("memory://", made)
    assert type(first) is MemoryStorage and first is not second


def test_file_absolute_and_relative(in_tmp: Path, made: list[SessionStorage]) -> None:
    """file:///abs/dir and file:./rel/dir give FileStorage at that directory; %20 is a space."""
    from telesession.storage.file import FileStorage

    absolute = make(f"file://{in_tmp}/abs", made)
    assert type(absolute) is FileStorage and absolute.path == in_tmp / "abs"
    assert make("file:./rel/dir", made).path == in_tmp / "rel" / "dir"  # type: ignore[attr-defined]
    assert make("file:with%20space", made).path == in_tmp / "with space"  # type: ignore[attr-defined]
    assert make(f"file://localhost{in_tmp}/local", made).path == in_tmp / "local"  # type: ignore[attr-defined]


def test_sqlite_three_slashes_relative_four_absolute(in_tmp: Path, made: list[SessionStorage]) -> None:
    """sqlite:///rel/path.db is relative to the current directory, sqlite:////abs/path.db absolute."""
    from telesession.storage.sqlite import SQLiteStorage

    relative = make("sqlite:///data/s.db", made)
    assert type(relative) is SQLiteStorage and relative.path == in_tmp / "data" / "s.db"
    absolute = make(f"sqlite:///{in_tmp}/abs.db?table=bot_sessions", made)
    assert isinstance(absolute, SQLiteStorage)
    assert absolute.path == in_tmp / "abs.db" and absolute.table == "bot_sessions"


def test_redis_with_parameters(made: list[SessionStorage]) -> None:
    """redis:// and rediss:// give RedisStorage; prefix/ttl/lock_lease are ours, the rest goes to redis-py."""
    if importlib.util.find_spec("redis") is None and not os.environ.get("CI"):
        pytest.skip("redis-py not installed (pip install 'telesession[redis]')")
    from telesession.storage.redis import RedisStorage

    storage = make("redis://:pw@127.0.0.1:6390/2?prefix=bot:&ttl=3600&lock_lease=5&socket_timeout=2", made)
    assert isinstance(storage, RedisStorage)  # nothing connects until the first command
    assert (storage.prefix, storage.ttl, storage.lock_lease) == ("bot:", 3600.0, 5.0)
    assert storage.location == "redis://127.0.0.1:6390/2"
    assert storage.client.connection_pool.connection_kwargs["socket_timeout"] == 2.0
    secure = make("rediss://example.invalid:6380/0", made)
    assert secure.location == "rediss://example.invalid:6380/0"  # type: ignore[attr-defined]


def test_redis_without_redis_py_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py a redis:// URL fails with the pip command, not a bare ModuleNotFoundError."""
    monkeypatch.setitem(sys.modules, "redis", None)  # what an uninstalled package looks like
    monkeypatch.delitem(sys.modules, "telesession.storage.redis", raising=False)
    with pytest.raises(ImportError, match=r"telesession\[redis\]"):
        storage_from_url("redis://localhost:6379/0")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "sessions.db",
        "ftp://example.com/x",
        "sqlite://x.db",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:///x.db?bogus=1",
        "file:",
        "file://otherhost/x",
        "file:///x?mode=1",
        "memory://x",
        "memory://?a=b",
        pytest.param("redis://h/0?ttl=soon", marks=pytest.mark.skipif(importlib.util.find_spec("redis") is None, reason="redis-py")),
    ],
)
def test_bad_urls_list_the_accepted_forms(url: str) -> None:
    """A URL we cannot use raises ValueError that names it and lists every accepted form."""
    with pytest.raises(ValueError) as info:
        storage_from_url(url)
    message = str(info.value)
    assert repr(url) in message
    for form in ("memory://", "file:///abs/dir", "sqlite:///rel/path.db", "sqlite:////abs/path.db", "redis://"):
        assert form in message


def test_bad_url_errors_hide_the_password() -> None:
    """The URL quoted in the error has its password masked."""
    with pytest.raises(ValueError) as info:
        storage_from_url("redis://user:s3cret@host:notaport/0")
    assert "s3cret" not in str(info.value) and "user:***@host" in str(info.value)


def test_create_false_refuses_a_path_that_is_not_there(in_tmp: Path) -> None:
    """create=False (for tools that only look): a missing file: or sqlite: path raises FileNotFoundError naming it, and nothing is made."""
    urls = ["file:./a b", "file:rel", f"file://{in_tmp}/abs", f"file://localhost{in_tmp}/x%20y", "sqlite:///rel.db",
            f"sqlite:///{in_tmp}/abs.db?table=t", f"SQLITE:///{in_tmp}/p%25.db"]  # fmt: skip
    for url in urls:
        with pytest.raises(FileNotFoundError) as missing:
            storage_from_url(url, create=False)
        path = Path(str(missing.value).removesuffix(" does not exist"))
        assert path.is_absolute() and not path.exists() and str(in_tmp) in str(path), url
        with storage_from_url(url) as made:  # create=True, the default, makes it
            assert made.path == path  # type: ignore[attr-defined]
        with storage_from_url(url, create=False) as opened:
            assert opened.path == path  # type: ignore[attr-defined]
    with storage_from_url("memory://", create=False):
        pass
