"""FileStorage's own promises: names that never escape, owner-only files, atomic writes, crashes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from telesession import CorruptRecordError, FileStorage, StorageError
from telesession.storage._files import key_filename

from .conftest import STORAGE_KINDS, file_lock_is_free
from .test_storage_contract import ODD_KEYS


def test_every_key_maps_inside_the_directory(tmp_path: Path) -> None:
    """Keys with separators, dots, NUL, emoji or 400 characters stay inside the directory as distinct files."""
    storage = FileStorage(tmp_path / "s")
    names = set()
    for key in ODD_KEYS:
        path = storage.file(key)
        assert path.parent == storage.path and len(path.name.encode()) < 255
        names.add(path.name)
        storage.set(key, {"k": key})
    assert len(names) == len(ODD_KEYS)
    assert {p.name for p in storage.path.iterdir() if p.suffix == ".json"} == names
    assert not (tmp_path / "x").exists()


def test_names_are_readable_for_ordinary_keys() -> None:
    """Chat and user keys keep readable file names; upper case is escaped for case-insensitive disks."""
    assert key_filename("-100123") == "-100123"
    assert key_filename("user:42") == "user%3A42"
    assert key_filename("A") != key_filename("a")


def test_files_are_private(tmp_path: Path) -> None:
    """A created directory is 0700 and every record 0600."""
    storage = FileStorage(tmp_path / "s")
    storage.set("k", {"a": 1})
    assert stat.S_IMODE(storage.path.stat().st_mode) == 0o700
    assert stat.S_IMODE(storage.file("k").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b'{"key": "other", "value": {}}', b'{"value": {}}', b"\xff\xfe"],
    ids=["empty", "torn", "list", "other key", "no key", "binary"],
)
def test_unreadable_record_is_reported_with_key_and_path(tmp_path: Path, content: bytes) -> None:
    """A record that can't be parsed raises CorruptRecordError naming key and path, and stays."""
    storage = FileStorage(tmp_path)
    storage.file("k").write_bytes(content)
    with pytest.raises(CorruptRecordError) as info:
        storage.get("k")
    assert info.value.key == "k" and info.value.location == str(storage.file("k"))
    assert "'k'" in str(info.value) and str(storage.file("k")) in str(info.value)
    assert storage.file("k").read_bytes() == content


def test_unusable_directory_is_a_clear_error(tmp_path: Path) -> None:
    """A path that is a file cannot hold sessions: StorageError names it."""
    (tmp_path / "f").write_text("x")
    with pytest.raises(StorageError, match="f"):
        FileStorage(tmp_path / "f")


def _writer(directory: str, started: Any) -> None:
    storage = FileStorage(directory)
    i = 0
    while True:
        i += 1
        for key in ("a", "b", "c"):
            # large enough that a write takes more than one syscall's worth of time
            storage.set(key, {"i": i, "pad": "x" * (i % 7 * 20000)})
        started.set()


def test_kill_9_during_writes_leaves_every_record_whole(tmp_path: Path) -> None:
    """A writer killed at random moments leaves each record old or new, never torn."""
    ctx = multiprocessing.get_context("spawn")
    for round_ in range(8):
        started = ctx.Event()
        proc = ctx.Process(target=_writer, args=(str(tmp_path), started))
        proc.start()
        assert started.wait(60)
        time.sleep(0.01 + round_ * 0.037)  # kill at a different point of the write loop each round
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        storage = FileStorage(tmp_path)
        for key in ("a", "b", "c"):
            value = storage.get(key)
            assert value is not None and value["pad"] == "x" * (value["i"] % 7 * 20000)


KILLED_HOLDER = """
import sys, time
from telesession import FileStorage
storage = FileStorage(sys.argv[1])
held = storage.lock("k")  # kept referenced: a collected lock object releases itself
held.__enter__()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_killed_process_never_leaves_a_key_locked(tmp_path: Path) -> None:
    """The OS frees the lock of a process killed while holding it."""
    with subprocess.Popen([sys.executable, "-c", KILLED_HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        path = FileStorage(tmp_path)._locks.path("k")
        assert not file_lock_is_free(path)
        proc.kill()
    assert file_lock_is_free(path)


def test_long_keys_are_listed_by_the_key_inside_the_file(tmp_path: Path) -> None:
    """A key too long for a file name is stored under its hash and still listed as itself."""
    storage = FileStorage(tmp_path)
    key = "é" * 300
    storage.set(key, {"a": 1})
    assert storage.file(key).name.startswith("~")
    assert list(storage.keys()) == [key]
    assert orjson.loads(storage.file(key).read_bytes())["key"] == key


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_unusable_lock_file_is_a_storage_error(kind: str, tmp_path: Path) -> None:
    """A lock file that can't be opened raises StorageError naming the key and the file."""
    with STORAGE_KINDS[kind](tmp_path) as storage:
        path = storage._locks.path("k")  # type: ignore[attr-defined]
        path.mkdir()  # a directory where the lock file belongs
        with pytest.raises(StorageError) as info:
            storage.lock("k").__enter__()
        assert info.value.key == "k" and info.value.location == str(path)
        assert "'k'" in str(info.value) and str(path) in str(info.value)
