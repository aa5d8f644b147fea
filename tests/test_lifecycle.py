"""A session's life beyond one update: expiry, namespaces, business chats, supergroup upgrades, unreadable records."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from telesession import MemoryStorage, SessionMiddleware, SessionStorage, per_chat, per_chat_user
from telesession._locks import table_for
from telesession.testing import updates

from .conftest import Counter, chat, make_bot, stored, text_update, update, user
from .test_concurrency import Done


@dataclass
class Count:
    n: int = 0


def count_bot(storage: SessionStorage, **options: Any) -> tuple[Any, SessionMiddleware[Count]]:
    bot = make_bot()
    sessions = SessionMiddleware(initial=Count, storage=storage, **options)
    bot.setup_middleware(sessions)
    def count(message: Any) -> None:
        message.session.n += 1

    bot.message_handler(func=lambda m: True)(count)
    bot.business_message_handler(func=lambda m: True)(count)
    return bot, sessions


# -- expiry ------------------------------------------------------------------------------------


def test_a_session_not_saved_for_longer_than_ttl_starts_afresh(storage: SessionStorage) -> None:
    """With ttl=0.5 s, a chat quiet for 0.7 s gets a fresh session; one saved within it keeps counting."""
    bot, sessions = count_bot(storage, ttl=timedelta(seconds=0.5))
    bot.process_new_updates([text_update("a", chat_id=1), text_update("a", chat_id=2)])
    time.sleep(0.3)
    bot.process_new_updates([text_update("b", chat_id=2)])
    time.sleep(0.4)  # chat 1 last saved 0.7 s ago, chat 2 0.4 s ago
    assert sessions.get("1") is None and sessions.get("2") == Count(2)
    bot.process_new_updates([text_update("c", chat_id=1), text_update("c", chat_id=2)])
    assert stored(storage, 1) == {"n": 1} and stored(storage, 2) == {"n": 3}


def test_sweep_removes_expired_records_while_the_bot_runs(storage: SessionStorage) -> None:
    """sweep() deletes only records older than ttl, counts them, and races live updates without losing any."""
    sessions = SessionMiddleware(initial=Count, storage=storage, ttl=3600)
    for key in ("101", "102", "103"):  # saved two hours ago, by a bot that ran then
        storage.set(key, {"data": {"n": 1}, "schema": 0, "saved_at": time.time() - 7200})
    done = Counter()
    bot = make_bot(threaded=True, num_threads=4)
    bot.setup_middleware(sessions)
    bot.setup_middleware(Done(done))
    bot.message_handler(func=lambda m: True)(lambda m: setattr(m.session, "n", m.session.n + 1))
    sweeps: list[int] = []
    sweeper = threading.Thread(target=lambda: sweeps.extend(sessions.sweep() for _ in range(20)))
    sweeper.start()
    batch = [text_update("x", chat_id=c) for _ in range(40) for c in (1, 2)]
    for i in range(0, 80, 20):
        bot.process_new_updates(batch[i : i + 20])
    sweeper.join(60)
    done.wait(80)
    bot.stop_bot()
    assert sum(sweeps) == 3 and sorted(sessions.keys()) == ["1", "2"]
    assert stored(storage, 1) == {"n": 40} and stored(storage, 2) == {"n": 40}


def test_sweep_needs_a_ttl() -> None:
    """Without a ttl there is nothing to sweep by: a clear error, from the async middleware too."""
    import asyncio

    from telesession.asyncio import AsyncSessionMiddleware

    with pytest.raises(ValueError, match="needs a ttl"):
        SessionMiddleware(initial=Count, storage=MemoryStorage()).sweep()
    with pytest.raises(ValueError, match="needs a ttl"):
        asyncio.run(AsyncSessionMiddleware(initial=Count, storage=MemoryStorage()).sweep())


# -- namespaces ----------------------------------------------------------------------------------


def test_two_bots_with_prefixes_share_one_storage(storage: SessionStorage) -> None:
    """Bots A and B on one storage, same chats: their sessions never meet; each lists its keys without its prefix."""
    a, sessions_a = count_bot(storage, prefix="bot-a:")
    b, sessions_b = count_bot(storage, prefix="bot-b:")
    a.process_new_updates([text_update("x", chat_id=1)] * 3)
    b.process_new_updates([text_update("x", chat_id=1)])
    assert stored(storage, "bot-a:1") == {"n": 3} and stored(storage, "bot-b:1") == {"n": 1}
    assert list(sessions_a.keys()) == ["1"] and list(sessions_b.keys()) == ["1"]
    assert storage.get("1") is None


def test_business_chats_have_sessions_of_their_own() -> None:
    """A business chat is not the bot's chat with the same id, nor a chat of another business connection."""
    storage = MemoryStorage()
    bot, sessions = count_bot(storage)
    bot.process_new_updates([
        updates.message("hi", chat_id=5, user_id=5),
        updates.business_message("hi", chat_id=5, user_id=5, connection_id="conn-a"),
        updates.business_message("hi", chat_id=5, user_id=5, connection_id="conn-a"),
        updates.business_message("hi", chat_id=5, user_id=5, connection_id="conn-b"),
    ])
    assert stored(storage, "5") == {"n": 1}
    assert stored(storage, per_chat.key(5, business_connection_id="conn-a")) == {"n": 2}
    assert stored(storage, per_chat.key(5, business_connection_id="conn-b")) == {"n": 1}
    assert sorted(sessions.keys()) == sorted(["5", "business:conn-a:5", "business:conn-b:5"])


_ids = itertools.count(1000)


def service(chat_id: int, kind: str, **fields: Any) -> Any:
    """A real service message update (no text) in ``chat_id``."""
    return update(message={"message_id": next(_ids), "date": 1764000000, "chat": chat(chat_id, kind), "from": user(1), **fields})


@pytest.mark.parametrize("order", ["old chat's message first", "new chat's message first"])
def test_a_group_upgraded_to_a_supergroup_keeps_its_sessions(storage: SessionStorage, order: str) -> None:
    """The chat's session and its members' sessions follow it to the supergroup, whichever service message comes first."""
    old, new = -4001, -1004001
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=Count, storage=storage))
    bot.setup_middleware(SessionMiddleware(initial=Count, storage=storage, get_session_key=per_chat_user, attr="member"))

    @bot.message_handler(func=lambda m: True)
    def count(message: Any) -> None:
        message.session.n += 1
        message.member.n += 1

    bot.process_new_updates([text_update("x", chat_id=old, user_id=u, kind="group") for u in (1, 1, 2)])
    assert stored(storage, old) == {"n": 3}
    moved_to = service(old, "group", migrate_to_chat_id=new)
    moved_from = service(new, "supergroup", migrate_from_chat_id=old)
    bot.process_new_updates([moved_to] if order.startswith("old") else [moved_from])
    bot.process_new_updates([moved_from] if order.startswith("old") else [moved_to])
    bot.process_new_updates([text_update("y", chat_id=new, user_id=1, kind="supergroup")])
    assert storage.get(str(old)) is None
    assert stored(storage, new) == {"n": 4}  # 3 in the old group, 1 here (service messages have no text handler)
    assert stored(storage, per_chat_user.key(new, 1)) == {"n": 2 + 1} and stored(storage, per_chat_user.key(new, 2)) == {"n": 1}
    assert not any(k.startswith(str(old)) for k in storage.keys())


def test_a_supergroup_that_already_has_a_session_keeps_both(storage: SessionStorage, log_errors: pytest.LogCaptureFixture) -> None:
    """If the new chat got a session before the upgrade reached us, nothing is overwritten: both stay, a warning names them."""
    old, new = -4002, -1004002
    bot, _ = count_bot(storage)
    bot.process_new_updates([text_update("x", chat_id=old, kind="group")] * 2 + [text_update("x", chat_id=new, kind="supergroup")])
    bot.process_new_updates([service(new, "supergroup", migrate_from_chat_id=old)])
    assert stored(storage, old) == {"n": 2} and stored(storage, new) == {"n": 1}
    assert f"'{old}' was not moved to '{new}'" in log_errors.text


def test_a_storage_that_cannot_list_keys_reports_the_upgrade_and_goes_on(log_errors: pytest.LogCaptureFixture) -> None:
    """Members' sessions move by listing keys; a storage without keys() gets an error in the log, never a crash into telebot."""

    class NoListing(MemoryStorage):
        def keys(self) -> Any:
            raise NotImplementedError("NoListing cannot list its keys")

    old, new = -4003, -1004003
    storage = NoListing()
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=Count, storage=storage, get_session_key=per_chat_user))
    bot.message_handler(func=lambda m: True)(lambda m: setattr(m.session, "n", m.session.n + 1))
    bot.process_new_updates([text_update("x", chat_id=old, user_id=1, kind="group")])
    bot.process_new_updates([service(new, "supergroup", migrate_from_chat_id=old), text_update("y", chat_id=new, user_id=1, kind="supergroup")])
    assert "a group that became a supergroup failed: NoListing cannot list its keys" in log_errors.text
    assert stored(storage, per_chat_user.key(new, 1)) == {"n": 1}  # the update after it was handled


# -- unreadable records ------------------------------------------------------------------------------

BAD = {"data": {"n": "not a number"}, "schema": 0, "saved_at": 1.0}
NOT_A_RECORD = ["a list", "is", "not a record"]


@pytest.mark.parametrize("bad", [BAD, NOT_A_RECORD], ids=["does not fit the class", "not a session record"])
def test_by_default_an_unreadable_record_stops_its_chat_and_stays(storage: SessionStorage, bad: Any, log_errors: pytest.LogCaptureFixture) -> None:
    """Reported with the key and where, left exactly as it was, the update not handled; other chats go on."""
    storage.set("42", bad)
    bot, _ = count_bot(storage)
    bot.process_new_updates([text_update("x", chat_id=42), text_update("x", chat_id=7)])
    assert storage.get("42") == bad and stored(storage, 7) == {"n": 1}
    assert "'42'" in log_errors.text and repr(storage)[:12] in log_errors.text


@pytest.mark.parametrize("bad", [BAD, NOT_A_RECORD], ids=["does not fit the class", "not a session record"])
def test_quarantine_moves_an_unreadable_record_aside_and_goes_on(storage: SessionStorage, bad: Any, caplog: pytest.LogCaptureFixture) -> None:
    """on_unreadable="quarantine": the record moves to quarantine:<time>:<key> unchanged, the chat starts afresh, the log says where."""
    caplog.set_level(logging.WARNING, logger="telesession")
    storage.set("42", bad)
    bot, sessions = count_bot(storage, on_unreadable="quarantine")
    bot.process_new_updates([text_update("x", chat_id=42)])
    assert stored(storage, 42) == {"n": 1}
    quarantined = [k for k in storage.keys() if k.startswith("quarantine:")]
    assert len(quarantined) == 1 and quarantined[0].endswith(":42")
    assert storage.get(quarantined[0]) == bad
    assert list(sessions.keys()) == ["42"]  # quarantined records are not sessions of the middleware
    assert [q[1] for q in sessions.engine.quarantined()] == ["42"]
    assert "moved aside" in caplog.text and "quarantine:" in caplog.text
    assert len(table_for(storage.identity())) == 0


def test_a_newer_schema_is_never_quarantined(storage: SessionStorage) -> None:
    """A record from a newer deploy is not unreadable, only not yet readable here: it stays put even under quarantine."""
    newer = {"data": {"n": 1}, "schema": 9, "saved_at": 1.0}
    storage.set("42", newer)
    bot, _ = count_bot(storage, on_unreadable="quarantine")
    bot.process_new_updates([text_update("x", chat_id=42)])
    assert storage.get("42") == newer and not [k for k in storage.keys() if k.startswith("quarantine:")]


def test_on_unreadable_takes_fail_or_quarantine() -> None:
    """Any other value is a mistake caught when the middleware is built."""
    with pytest.raises(ValueError, match="'fail' or 'quarantine'"):
        SessionMiddleware(initial=Count, storage=MemoryStorage(), on_unreadable="ignore")
