"""End to end: real polling TeleBots (threaded, 4 workers) over HTTP against the fake Bot API.

Every test runs on every storage kind of conftest's ``storage`` fixture, stops its bot and its
server, and waits for results with the fake API's waits, never with fixed sleeps.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import telebot
from telebot import types
from telebot.handler_backends import BaseMiddleware, CancelUpdate

from telesession import SessionMiddleware, SessionStorage
from telesession.testing import FakeBotAPI, FakeUser, patched_api_url, serve_bot, updates

from .conftest import stored

TOKEN = "123:TEST"


@dataclass
class CounterSession:
    count: int = 0


@dataclass
class OrderSession:
    step: str = ""  # "", "size", "colour" or "confirm"
    size: str = ""
    colour: str = ""
    orders: list[str] = field(default_factory=list)


def new_bot(storage: SessionStorage, initial: Any = CounterSession, threaded: bool = True) -> telebot.TeleBot:
    bot = telebot.TeleBot(TOKEN, threaded=threaded, num_threads=4, use_class_middlewares=True)
    bot.setup_middleware(SessionMiddleware(initial=initial, storage=storage))
    return bot


def add_counter(bot: telebot.TeleBot) -> None:
    @bot.message_handler(commands=["count"])
    def count(message: types.Message, session: CounterSession) -> None:
        session.count += 1
        # The reply goes out while the session is held: it widens the window a lost write needs.
        bot.send_message(message.chat.id, str(session.count))


def reopened(storage: SessionStorage) -> SessionStorage:
    """A new storage object on the same data, as a restarted process would open it, when possible."""
    path = getattr(storage, "path", None)
    return type(storage)(path) if isinstance(path, Path) else storage  # type: ignore[call-arg]


def replies(api: FakeBotAPI, chat_id: int) -> list[str]:
    return [c.params["text"] for c in api.calls("sendMessage") if c.params["chat_id"] == chat_id and c.status == 200]


def run_threads(*jobs: Any) -> None:
    """Run each job in its own thread, join them all, and re-raise the first failure here."""
    failures: list[BaseException] = []

    def run(job: Any) -> None:
        try:
            job()
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def test_concurrent_chats_keep_exact_counts(storage: SessionStorage) -> None:
    """5 group chats x 40 /count from 4 users each at once: every count value appears exactly once."""
    bot = new_bot(storage)
    add_counter(bot)
    with FakeBotAPI() as api, serve_bot(api, bot):
        groups = [api.group(f"group {i}") for i in range(5)]
        members = [api.user() for _ in range(4)]

        def spam(group: Any, user: FakeUser) -> Any:
            return lambda: [group.send(user, "/count") for _ in range(10)]

        run_threads(*(spam(g, u) for g in groups for u in members))
        api.wait_for_calls("sendMessage", count=200, timeout=30)
    for group in groups:
        assert sorted(replies(api, group.id), key=int) == [str(n) for n in range(1, 41)]
        assert stored(storage, group.id) == {"count": 40}


def test_restart_keeps_every_session(storage: SessionStorage) -> None:
    """A new bot on the same storage continues every chat's session where the old one left it."""
    with FakeBotAPI() as api:
        users = [api.user() for _ in range(6)]
        first = new_bot(storage)
        add_counter(first)
        with serve_bot(api, first):
            run_threads(*(lambda u=u, n=n: [u.ask("/count") for _ in range(n + 1)] for n, u in enumerate(users)))
        assert [stored(storage, u.id) for u in users] == [{"count": n + 1} for n in range(6)]

        again = reopened(storage)
        second = new_bot(again)
        add_counter(second)
        try:
            with serve_bot(api, second):
                for n, user in enumerate(users):
                    assert user.ask("/count").text == str(n + 2)
        finally:
            if again is not storage:
                again.close()
        assert api.pending_updates() == 0  # nothing was left for the second bot to redo


def order_bot(storage: SessionStorage) -> telebot.TeleBot:
    """/order, then three button steps: size, colour, confirm. Stale buttons are refused."""
    bot = new_bot(storage, OrderSession)

    def keyboard(*labels: str) -> types.InlineKeyboardMarkup:
        markup = types.InlineKeyboardMarkup()
        markup.row(*(types.InlineKeyboardButton(label, callback_data=label) for label in labels))
        return markup

    @bot.message_handler(commands=["order"])
    def order(message: types.Message, session: OrderSession) -> None:
        session.step = "size"
        bot.send_message(message.chat.id, "Size?", reply_markup=keyboard("S", "M", "L"))

    @bot.callback_query_handler(func=lambda call: True)
    def step(call: types.CallbackQuery, session: OrderSession) -> None:
        chat_id, message_id, choice = call.message.chat.id, call.message.message_id, call.data
        if session.step == "size" and choice in ("S", "M", "L"):
            session.size, session.step = choice, "colour"
            bot.edit_message_text("Colour?", chat_id, message_id, reply_markup=keyboard("Red", "Blue"))
        elif session.step == "colour" and choice in ("Red", "Blue"):
            session.colour, session.step = choice, "confirm"
            text = f"{session.size} {session.colour}?"
            bot.edit_message_text(text, chat_id, message_id, reply_markup=keyboard("Confirm", "Cancel"))
        elif session.step == "confirm" and choice in ("Confirm", "Cancel"):
            if choice == "Confirm":
                session.orders.append(f"{session.size} {session.colour}")
            session.step = ""
            bot.edit_message_text(f"{choice}ed: {session.size} {session.colour}", chat_id, message_id)
        else:
            bot.answer_callback_query(call.id, "This button has expired.")
            return
        bot.answer_callback_query(call.id)

    return bot


def test_multi_step_form_driven_by_buttons(storage: SessionStorage) -> None:
    """Users walk a 3-step button form at once; a double tap on Confirm orders once, stale taps do nothing."""
    with FakeBotAPI() as api, serve_bot(api, order_bot(storage)):
        users = [api.user() for _ in range(6)]

        def walk(user: FakeUser, size: str, colour: str) -> None:
            first = form = user.ask("/order", "Size")
            user.press(form, size)
            form = api.wait_for_edit(form, "Colour")
            user.press(first, "S")  # a late tap on the size step's keyboard: refused, nothing changes
            user.press(form, colour)
            form = api.wait_for_edit(form, r"\?$")
            # A double tap: both land before either is handled; the second finds the form closed.
            taps = {user.press(form, "Confirm").id, user.press(form, "Confirm").id}
            api.wait_for_edit(form, "Confirmed")
            answers = api.wait_for_calls("answerCallbackQuery", count=2,
                                         where=lambda c: c.params["callback_query_id"] in taps)
            assert sorted(str(c.params.get("text")) for c in answers) == ["None", "This button has expired."]

        run_threads(*(lambda u=u, i=i: walk(u, "SML"[i % 3], ("Red", "Blue")[i % 2]) for i, u in enumerate(users)))
    for i, user in enumerate(users):
        want = f"{'SML'[i % 3]} {('Red', 'Blue')[i % 2]}"
        assert stored(storage, user.id) == {"step": "", "size": want[0], "colour": want[2:], "orders": [want]}


class Cancel(BaseMiddleware):  # type: ignore[misc]
    """Cancels every message whose text is /ignored, after the session middleware took its lock."""

    update_types = ["message"]

    def __init__(self) -> None:
        super().__init__()
        self.cancelled: Counter[int] = Counter()  # per chat
        self._cond = threading.Condition()

    def pre_process(self, message: types.Message, data: dict[str, Any]) -> CancelUpdate | None:
        if message.text == "/ignored":
            with self._cond:
                self.cancelled[message.chat.id] += 1
                self._cond.notify_all()
            return CancelUpdate()
        return None

    def wait(self, chat_id: int, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.cancelled[chat_id] >= count, 5), self.cancelled

    def post_process(self, message: types.Message, data: dict[str, Any], exception: BaseException | None) -> None:
        pass


def test_cancelled_updates_never_leave_the_session_locked(storage: SessionStorage) -> None:
    """A later middleware cancels updates (telebot then skips every post_process); the chat still answers."""
    bot = new_bot(storage)
    cancel = Cancel()
    bot.setup_middleware(cancel)
    add_counter(bot)
    with FakeBotAPI() as api, serve_bot(api, bot):
        users = [api.user() for _ in range(5)]

        def talk(user: FakeUser) -> None:
            for n in range(1, 6):
                user.send("/ignored")
                cancel.wait(user.id, n)  # cancelled while the session's lock was held for it
                # Promptly answered: a lock left held would make this time out.
                assert user.ask("/count", timeout=3).text == str(n)

        run_threads(*(lambda u=u: talk(u) for u in users))
    assert sum(cancel.cancelled.values()) == 25
    assert [stored(storage, u.id) for u in users] == [{"count": 5}] * 5


def test_get_updates_failing_once_loses_nothing(storage: SessionStorage) -> None:
    """getUpdates answers 502 once, with updates waiting: polling recovers, each is handled once."""
    bot = new_bot(storage)
    add_counter(bot)
    with FakeBotAPI() as api:
        users = [api.user() for _ in range(4)]
        for user in users:
            for _ in range(5):
                user.send("/count")
        api.fail_next("getUpdates", 502)
        with serve_bot(api, bot):
            api.wait_for_calls("sendMessage", count=20)
            # Once more mid-run: whichever poll comes next fails, the one that would fetch these
            # updates or the one that would confirm them; either way nothing is lost or repeated.
            api.fail_next("getUpdates", 502)
            for user in users:
                user.send("/count")
            api.wait_for_calls("sendMessage", count=24)
            api.wait_for_calls("getUpdates", count=2, where=lambda c: c.status == 502)
        assert api.pending_updates() == 0
    assert Counter(c.status for c in api.calls("sendMessage")) == {200: 24}
    for user in users:
        assert sorted(replies(api, user.id), key=int) == [str(n) for n in range(1, 7)]
        assert stored(storage, user.id) == {"count": 6}


def test_webhook_threads_calling_process_new_updates_at_once(storage: SessionStorage) -> None:
    """8 threads hand batches to process_new_updates at once, as a webhook server does: exact counts."""
    bot = telebot.TeleBot(TOKEN, threaded=False, use_class_middlewares=True)
    sessions = SessionMiddleware(initial=CounterSession, storage=storage)
    bot.setup_middleware(sessions)
    add_counter(bot)
    chats = [11, 12, 13]
    with FakeBotAPI() as api, patched_api_url(api):
        def serve(thread_no: int) -> None:
            for batch_no in range(6):
                batch = [updates.command("count", user_id=chats[(thread_no + batch_no + i) % 3]) for i in range(3)]
                bot.process_new_updates(batch)

        run_threads(*(lambda t=t: serve(t) for t in range(8)))
        # threaded=False: a call returns once its updates ran, or were parked behind a busy chat
        # (they run on a telesession thread): wait for every reply.
        api.wait_for_calls("sendMessage", count=144, timeout=30)
    for chat_id in chats:
        # The last reply goes out before its update saves: read the count under the chat's key,
        # as any reader beside a running bot must.
        with sessions.edit(str(chat_id)) as session:
            assert session == CounterSession(count=48)
        assert sorted(replies(api, chat_id), key=int) == [str(n) for n in range(1, 49)]


def test_the_demo_runs_clean() -> None:
    """examples/demo.py, the README's first command, ends with every session right and exit code 0."""
    demo = Path(__file__).resolve().parent.parent / "examples" / "demo.py"
    done = subprocess.run([sys.executable, str(demo)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: every session ended exactly as its user's actions say." in done.stdout
