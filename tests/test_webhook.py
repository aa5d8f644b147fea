"""Through telebot's own sync webhook listener (FastAPI + uvicorn): concurrent deliveries lose nothing."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from telesession import SessionMiddleware, SessionStorage
from telesession.testing import updates

from .conftest import Counter, make_bot, stored
from .test_concurrency import Done
from .redis_server import free_port

uvicorn = pytest.importorskip("uvicorn")
webhooks = pytest.importorskip("telebot.ext.sync.webhooks")

SECRET = "s3cret"


def serve(app: Any) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:  # uvicorn offers no event to wait on; bounded readiness poll
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.should_exit = True
        thread.join(10)


def post(url: str, update: dict[str, Any]) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(update).encode(),
        headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def test_webhook_deliveries_in_parallel_lose_no_update(storage: SessionStorage, tmp_path: Path) -> None:
    """8 clients x 30 POSTs to the webhook for 3 chats: every increment lands.

    With threaded=False a POST returns once its update is handled, or parked while another
    update holds its chat (then it runs on a telesession thread): count the handled ones.
    """
    bot = make_bot(threaded=False)  # the web server's threads run the handlers, as in production
    bot.setup_middleware(SessionMiddleware(initial=lambda: {"count": 0}, storage=storage))
    handled = Counter()

    @bot.message_handler(commands=["count"])
    def count(message: Any) -> None:
        value = message.session["count"]
        time.sleep(0.001)  # a slow read-modify-write invites lost updates
        message.session["count"] = value + 1

    bot.setup_middleware(Done(handled))

    listener = webhooks.SyncWebhookListener(bot, SECRET, url_path="/hook")
    for url in serve(listener.app):
        statuses: list[int] = []

        def client(n: int) -> None:
            for i in range(30):
                statuses.append(post(url, updates.command("count", chat_id=(n + i) % 3).json))

        clients = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(60)
        assert statuses == [200] * 240
        handled.wait(240)
    assert [stored(storage, c)["count"] for c in range(3)] == [80, 80, 80]
