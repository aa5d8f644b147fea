"""A real redis-server for tests: started on 127.0.0.1 on a free port, in a temp dir, stopped at the end.

Without the binary (or redis-py) tests skip with the reason, except under CI (env var ``CI``
set), where they fail: CI must not pass by skipping Redis.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from telesession.storage.redis import RedisStorage


def redis_binary() -> str:
    """Path of redis-server ($REDIS_SERVER, else found on PATH), or skip (fail under CI) with the reason."""
    binary = shutil.which(os.environ.get("REDIS_SERVER") or "redis-server")
    why = None
    if binary is None:
        why = "redis-server not found (apt-get install redis-server, or set REDIS_SERVER to its path)"
    else:
        try:
            import redis  # noqa: F401
        except ImportError:
            why = "redis-py not installed (pip install 'telesession[redis]')"
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"Redis tests cannot run under CI: {why}", pytrace=False)
        pytest.skip(why)
    assert binary is not None
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process. ``stop()`` then ``start()`` restarts it on the same port and dir."""

    def __init__(self, directory: Path, *extra_args: str):
        self.binary = redis_binary()
        self.directory = directory
        self.port = free_port()
        self.extra_args = extra_args or ("--save", "", "--appendonly", "no")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory), *self.extra_args]
        log = open(self.directory / "redis.log", "ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start: {(self.directory / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM and wait: Redis closes its connections and writes its AOF if it keeps one."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


_shared: RedisServer | None = None


def shared_redis_server() -> RedisServer:
    """One server for the whole test run, started on first use, stopped when the run ends."""
    global _shared
    if _shared is None:
        directory = Path(tempfile.mkdtemp(prefix="telesession-redis-"))
        server = RedisServer(directory).start()
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        atexit.register(server.stop)  # runs before the rmtree above (atexit is LIFO)
        _shared = server
    return _shared


def make_redis_storage(prefix: str | None = None, **options: object) -> RedisStorage:
    """A RedisStorage on the shared server; fresh and empty unless ``prefix`` is reused.

    Processes that a test spawns find the parent's server through ``TELESESSION_TEST_REDIS_URL``.
    """
    from telesession.storage.redis import RedisStorage

    url = os.environ.get("TELESESSION_TEST_REDIS_URL")
    if url is None:
        url = os.environ["TELESESSION_TEST_REDIS_URL"] = shared_redis_server().url
    return RedisStorage.from_url(url, prefix=prefix or f"test-{uuid.uuid4().hex}:", **options)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The shared server (see ``shared_redis_server``), stopped at the end of the session."""
    server = shared_redis_server()
    yield server
    server.stop()
