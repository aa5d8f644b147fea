"""telesession.testing: the fake Bot API, simulated users, waits and update factories.

Bots here are real TeleBots polling over HTTP (threaded, 4 workers); nothing of telebot is mocked.
"""

from __future__ import annotations

import ast
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import telebot
from telebot import apihelper, types
from telebot.apihelper import ApiTelegramException

import telesession.testing
from telesession.testing import FakeBotAPI, patched_api_url, serve_bot, updates

TOKEN = "123:TEST"


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    with FakeBotAPI() as fake:
        yield fake


def new_bot() -> telebot.TeleBot:
    return telebot.TeleBot(TOKEN, threaded=True, num_threads=4)


def shop_bot() -> telebot.TeleBot:
    """A small bot with a counter per chat and a keyboard whose presses edit the message."""
    bot = new_bot()
    counts: dict[int, int] = {}
    lock = threading.Lock()

    @bot.message_handler(commands=["count"])
    def count(message: types.Message) -> None:
        with lock:
            counts[message.chat.id] = counts.get(message.chat.id, 0) + 1
            n = counts[message.chat.id]
        bot.send_message(message.chat.id, f"Count: {n}", message_thread_id=message.message_thread_id)

    @bot.message_handler(commands=["shop"])
    def shop(message: types.Message) -> None:
        keyboard = types.InlineKeyboardMarkup()
        keyboard.add(types.InlineKeyboardButton("Add apple", callback_data="add:apple"))
        bot.send_message(message.chat.id, "Cart: empty", reply_markup=keyboard)

    @bot.callback_query_handler(func=lambda call: True)
    def press(call: types.CallbackQuery) -> None:
        item = call.data.split(":")[1]
        text = call.message.text.replace("empty", "") + f" {item}"
        bot.edit_message_text(text, call.message.chat.id, call.message.message_id, reply_markup=call.message.reply_markup)
        bot.answer_callback_query(call.id, "Added")

    return bot


def test_bot_answers_and_buttons_press(api: FakeBotAPI) -> None:
    """A user talks to a polling bot, presses a button, and sees the message edited."""
    with serve_bot(api, shop_bot()):
        alice = api.user(first_name="Alice")
        assert alice.ask("/count").text == "Count: 1"
        assert alice.ask("/count").text == "Count: 2"
        menu = alice.ask("/shop")
        assert [b.text for row in menu.reply_markup.keyboard for b in row] == ["Add apple"]
        query = alice.press(menu, "Add apple")
        assert api.wait_for_edit(menu).text == "Cart:  apple"
        alice.press(menu, "add:apple")  # by callback_data too, on the edited keyboard
        assert api.wait_for_edit(menu, r"apple apple$").text == "Cart:  apple apple"
        answers = api.wait_for_calls("answerCallbackQuery", count=2)
        assert {"callback_query_id": query.id, "text": "Added"} in [c.params for c in answers]
        assert all(call.status == 200 for call in api.calls())
    # Every reply was claimed by exactly one wait, in order.
    assert [m.text for m in api.messages(alice.id)] == ["Count: 1", "Count: 2", "Cart:  apple apple"]


def readme_bot(token: str) -> telebot.TeleBot:
    """README's "Testing your bot" bot, with a dict for the session (SessionMiddleware is tested elsewhere)."""
    bot = telebot.TeleBot(token, use_class_middlewares=True)
    sessions: dict[int, dict[str, int]] = {}
    lock = threading.Lock()

    def session(chat_id: int) -> dict[str, int]:
        return sessions.setdefault(chat_id, {"count": 0})

    @bot.message_handler(commands=["count"])
    def count(message: types.Message) -> None:
        with lock:
            session(message.chat.id)["count"] += 1
            n = session(message.chat.id)["count"]
        bot.send_message(message.chat.id, f"Count: {n}")

    @bot.message_handler(commands=["reset"])
    def reset(message: types.Message) -> None:
        keyboard = types.InlineKeyboardMarkup()
        keyboard.add(types.InlineKeyboardButton("Yes, reset", callback_data="reset"))
        bot.send_message(message.chat.id, "Reset the counter?", reply_markup=keyboard)

    @bot.callback_query_handler(func=lambda call: call.data == "reset")
    def do_reset(call: types.CallbackQuery) -> None:
        with lock:
            session(call.message.chat.id)["count"] = 0
        bot.edit_message_text("Counter reset.", call.message.chat.id, call.message.message_id)
        bot.answer_callback_query(call.id)

    @bot.message_handler(commands=["mood"])
    def mood(message: types.Message) -> None:
        keyboard = types.ReplyKeyboardMarkup(resize_keyboard=True)
        keyboard.add("Good", "Bad")
        bot.send_message(message.chat.id, "How are you?", reply_markup=keyboard)

    @bot.message_handler(func=lambda message: message.text in ("Good", "Bad"))
    def answer(message: types.Message) -> None:
        bot.send_message(message.chat.id, f"Noted: {message.text.lower()}", reply_markup=types.ReplyKeyboardRemove())

    return bot


def test_readme_example_with_a_dict_for_the_session() -> None:
    """README's test, step for step: counts, an inline button, a reply keyboard, a group."""
    with FakeBotAPI() as api, serve_bot(api, readme_bot("123:TEST")):
        alice = api.user(first_name="Alice")
        assert alice.ask("/count").text == "Count: 1"
        assert alice.ask("/count").text == "Count: 2"

        question = alice.ask("/reset")
        alice.press(question, "Yes, reset")
        assert api.wait_for_edit(question).text == "Counter reset."
        assert alice.ask("/count").text == "Count: 1"

        mood = alice.ask("/mood")
        alice.press(mood, "Good")
        assert alice.wait_for_reply().text == "Noted: good"

        group = api.group("Friends")
        bob = api.user(first_name="Bob")
        assert group.ask(bob, "/count").text == "Count: 1"
        assert group.ask(alice, "/count").text == "Count: 2"


def keyboard_bot() -> telebot.TeleBot:
    """Replies with a reply keyboard to /menu and /yesno, echoes other texts, removes the keyboard on /done."""
    bot = new_bot()

    @bot.message_handler(commands=["menu", "yesno", "phone", "done"])
    def menu(message: types.Message) -> None:
        command = message.text.split()[0][1:]
        keyboard: Any = types.ReplyKeyboardMarkup(one_time_keyboard=True)
        if command == "menu":
            keyboard.row("Tea", "Coffee")
            keyboard.row(types.KeyboardButton("Water"))
        elif command == "yesno":
            keyboard.add("Yes", "No")
        elif command == "phone":
            keyboard.add(types.KeyboardButton("Share phone", request_contact=True))
        else:
            keyboard = types.ReplyKeyboardRemove()
        bot.send_message(message.chat.id, f"{command}?", reply_markup=keyboard,
                         message_thread_id=message.message_thread_id)

    @bot.message_handler(func=lambda m: True, content_types=["text", "contact"])
    def echo(message: types.Message) -> None:
        said = message.contact.phone_number if message.contact else message.text
        bot.send_message(message.chat.id, f"{message.from_user.first_name}: {said}",
                         message_thread_id=message.message_thread_id)

    return bot


def test_reply_keyboard_buttons_send_their_text(api: FakeBotAPI) -> None:
    """A reply keyboard button sends its text as the user's message, while that keyboard is shown."""
    with serve_bot(api, keyboard_bot()):
        alice = api.user(first_name="Alice")
        menu = alice.ask("/menu")
        assert menu.reply_markup is None  # as Telegram: a reply keyboard is not part of the message
        assert api.reply_keyboard(alice.id, menu.message_id) == api.reply_keyboard(alice.id)
        assert api.reply_keyboard(alice.id)["keyboard"][0] == [{"text": "Tea"}, {"text": "Coffee"}]
        sent = alice.press(menu, "Coffee")
        assert isinstance(sent, types.Message) and (sent.text, sent.from_user.id) == ("Coffee", alice.id)
        assert alice.wait_for_reply().text == "Alice: Coffee"
        alice.press(menu, "Water")  # one_time_keyboard hides it; the user can still open it again
        assert alice.wait_for_reply().text == "Alice: Water"
        with pytest.raises(AssertionError, match=r"no button 'Milk' on the reply keyboard .*\['Tea', 'Coffee', 'Water'\]"):
            alice.press(menu, "Milk")

        question = alice.ask("/yesno")
        with pytest.raises(AssertionError, match="reply keyboard of message .* is no longer shown"):
            alice.press(menu, "Tea")  # the newer keyboard replaced it
        alice.press(question, "Yes")
        assert alice.wait_for_reply().text == "Alice: Yes"
        alice.ask("/done")
        assert api.reply_keyboard(alice.id) is None
        with pytest.raises(AssertionError, match="no longer shown"):
            alice.press(question, "No")

        phone = alice.ask("/phone")
        with pytest.raises(AssertionError, match=r"shares the user's phone number \(request_contact\).*api.send_as"):
            alice.press(phone, "Share phone")
        api.send_as(alice.json, alice.chat_id, contact={"phone_number": "+15550100", "first_name": "Alice"})
        assert alice.wait_for_reply().text == "Alice: +15550100"

        forum, bob = api.group("Cafe", forum=True), api.user(first_name="Bob")
        in_topic = forum.ask(bob, "/menu", topic=3)
        answer = bob.press(in_topic, "Tea")  # from Bob, in the group's topic
        assert isinstance(answer, types.Message)
        assert (answer.chat.id, answer.message_thread_id) == (forum.id, 3)
        assert forum.wait_for_reply(topic=3).text == "Bob: Tea"


def test_group_ask_waits_for_the_reply_in_the_group_or_topic(api: FakeBotAPI) -> None:
    """FakeChat.ask sends as the user and returns the bot's next unclaimed message there (in the topic)."""
    with serve_bot(api, shop_bot()):
        alice, bob = api.user(first_name="Alice"), api.user(first_name="Bob")
        group = api.group("Friends")
        assert group.ask(alice, "/count").text == "Count: 1"
        assert group.ask(bob, "/count", r"Count: 2").text == "Count: 2"
        forum = api.group("Dev", forum=True)
        reply = forum.ask(alice, "/count", topic=9)
        assert (reply.text, reply.message_thread_id, reply.chat.id) == ("Count: 1", 9, forum.id)
        with pytest.raises(AssertionError, match=r"no reply in chat -\d+ topic 4 matching anything within 0.2s"):
            forum.ask(bob, "/nothing", timeout=0.2, topic=4)
        with pytest.raises(ValueError, match="topics need a forum"):
            group.ask(alice, "/count", topic=1)


def test_pushed_callback_queries_can_be_answered(api: FakeBotAPI) -> None:
    """A callback_query pushed from the update factories is answerable once, like a pressed one."""
    bot = new_bot()

    @bot.callback_query_handler(func=lambda call: True)
    def press(call: types.CallbackQuery) -> None:
        bot.answer_callback_query(call.id)

    with serve_bot(api, bot):
        api.push(updates.callback_query("buy", inline_message_id="im-1"))
        (answer,) = api.wait_for_calls("answerCallbackQuery")
        assert answer.status == 200


def test_many_users_at_once_each_see_their_own_replies(api: FakeBotAPI) -> None:
    """Concurrent users in their own threads: every /count is answered in its own chat."""
    with serve_bot(api, shop_bot()):
        users = [api.user() for _ in range(8)]

        def talk(user: Any) -> None:
            for n in range(1, 6):
                assert user.ask("/count").text == f"Count: {n}"

        threads = [threading.Thread(target=talk, args=(u,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(api.wait_for_calls("sendMessage", count=40)) == 40


def test_get_updates_502_once_and_polling_recovers_with_nothing_lost(api: FakeBotAPI) -> None:
    """One getUpdates answered 502: telebot backs off, polls again, and every update is handled once."""
    api.fail_next("getUpdates", 502)
    with serve_bot(api, shop_bot()):
        users = [api.user() for _ in range(5)]
        for _ in range(4):
            for user in users:
                user.send("/count")
        for user in users:
            replies = [user.wait_for_reply().text for _ in range(4)]
            assert sorted(replies) == [f"Count: {n}" for n in range(1, 5)]
        polls = api.calls("getUpdates")
        assert [c.status for c in polls].count(502) == 1
        assert polls[0].status == 502
    assert len(api.calls("sendMessage")) == 20  # none lost, none twice


def test_flood_wait_answers_429_with_retry_after_until_it_passes(api: FakeBotAPI) -> None:
    """429 carries retry_after; a retry that comes too early is refused again; one that waits goes through."""
    bot = new_bot()

    @bot.message_handler(func=lambda m: True)
    def echo(message: types.Message) -> None:
        while True:
            try:
                bot.send_message(message.chat.id, message.text)
                return
            except ApiTelegramException as e:
                if e.error_code != 429:
                    raise
                time.sleep(e.result_json["parameters"]["retry_after"])  # what a polite bot does

    api.flood_wait("sendMessage", retry_after=0.3)
    with serve_bot(api, bot):
        user = api.user()
        assert user.ask("hello").text == "hello"
        refused, accepted = api.calls("sendMessage")
        assert (refused.status, accepted.status) == (429, 200)
        assert accepted.time - refused.time >= 0.3

        # Called straight from here, an early retry gets 429 again with less time left.
        api.flood_wait("sendMessage", retry_after=5)
        with pytest.raises(ApiTelegramException) as first:
            bot.send_message(user.id, "x")
        with pytest.raises(ApiTelegramException) as second:
            bot.send_message(user.id, "x")
        assert first.value.error_code == second.value.error_code == 429
        assert first.value.result_json["parameters"]["retry_after"] == 5
        assert 0 < second.value.result_json["parameters"]["retry_after"] <= 5


def test_fail_next_queues_failures_per_method(api: FakeBotAPI) -> None:
    """fail_next fails exactly the next N calls of that method, in order, then calls succeed."""
    api.fail_next("sendMessage", 502)
    api.fail_next("sendMessage", 500, times=2)
    with patched_api_url(api):
        bot = new_bot()
        codes = []
        for _ in range(4):
            try:
                bot.send_message(1, "hi")
                codes.append(200)
            except ApiTelegramException as e:
                codes.append(e.error_code)
    assert codes == [502, 500, 500, 200]
    assert [c.status for c in api.calls("sendMessage")] == codes


def test_api_url_is_patched_inside_and_restored_after(api: FakeBotAPI) -> None:
    """patched_api_url and serve_bot restore telebot's module globals, nested or not."""
    before = apihelper.API_URL, apihelper.FILE_URL
    with patched_api_url(api):
        assert apihelper.API_URL == api.api_url and apihelper.FILE_URL == api.file_url
        with FakeBotAPI() as other, patched_api_url(other):
            assert apihelper.API_URL == other.api_url
        assert apihelper.API_URL == api.api_url
    assert (apihelper.API_URL, apihelper.FILE_URL) == before
    with serve_bot(api, new_bot()):
        assert apihelper.API_URL == api.api_url
    assert (apihelper.API_URL, apihelper.FILE_URL) == before
    with pytest.raises(ZeroDivisionError), patched_api_url(api):
        1 / 0
    assert (apihelper.API_URL, apihelper.FILE_URL) == before


def test_groups_topics_channels_and_membership(api: FakeBotAPI) -> None:
    """Group, forum topic, channel and membership updates reach the matching telebot handlers."""
    bot = shop_bot()
    seen: list[tuple[str, Any]] = []
    cond = threading.Condition()

    def note(kind: str, what: Any) -> None:
        with cond:
            seen.append((kind, what))
            cond.notify_all()

    @bot.channel_post_handler(func=lambda m: True)
    def post(message: types.Message) -> None:
        note("channel_post", message.chat.id)

    @bot.chat_member_handler()
    def member(update: types.ChatMemberUpdated) -> None:
        note("chat_member", (update.new_chat_member.user.id, update.new_chat_member.status))

    @bot.my_chat_member_handler()
    def me(update: types.ChatMemberUpdated) -> None:
        note("my_chat_member", update.new_chat_member.status)
        if update.new_chat_member.status == "member":
            bot.send_message(update.chat.id, "hello group")

    @bot.message_handler(content_types=["new_chat_members", "left_chat_member"])
    def service(message: types.Message) -> None:
        note(message.content_type, message.from_user.id)

    with serve_bot(api, bot):
        alice, bob = api.user(first_name="Alice"), api.user(first_name="Bob")
        forum = api.group("Dev", forum=True)
        forum.add_bot(by=alice)
        assert forum.wait_for_reply().text == "hello group"
        forum.send(alice, "/count", topic=7)
        in_topic = forum.wait_for_reply(topic=7)
        assert (in_topic.text, in_topic.message_thread_id) == ("Count: 1", 7)
        forum.send(bob, "/count")
        assert forum.wait_for_reply().text == "Count: 2"  # this bot counts per chat, topics share it

        forum.join(bob)
        forum.leave(bob)
        news = api.channel("News")
        news.post("breaking")
        forum.remove_bot(by=alice)
        with cond:
            assert cond.wait_for(lambda: len(seen) == 7, 5), seen

    # Telebot regroups a batch by type and runs it on 4 workers: order is not guaranteed.
    assert sorted(seen, key=repr) == sorted([
        ("my_chat_member", "member"), ("my_chat_member", "kicked"), ("channel_post", news.id),
        ("new_chat_members", bob.id), ("chat_member", (bob.id, "member")),
        ("left_chat_member", bob.id), ("chat_member", (bob.id, "left")),
    ], key=repr)


def test_inline_queries_and_chosen_results(api: FakeBotAPI) -> None:
    """Inline queries reach inline handlers; their answers are recorded calls."""
    bot = new_bot()
    chosen: list[str] = []

    @bot.inline_handler(func=lambda q: True)
    def inline(query: types.InlineQuery) -> None:
        result = types.InlineQueryResultArticle("1", query.query.upper(), types.InputTextMessageContent(query.query))
        bot.answer_inline_query(query.id, [result])

    @bot.chosen_inline_handler(func=lambda r: True)
    def pick(result: types.ChosenInlineResult) -> None:
        chosen.append(result.result_id)
        bot.send_message(result.from_user.id, "chosen")

    with serve_bot(api, bot):
        user = api.user()
        query = user.inline_query("apple")
        (answer,) = api.wait_for_calls("answerInlineQuery")
        assert answer.params["inline_query_id"] == query.id
        assert answer.params["results"][0]["title"] == "APPLE"
        user.choose_inline_result("1", query="apple")
        user.wait_for_reply("chosen")
    assert chosen == ["1"]


def test_edits_and_replies_from_users(api: FakeBotAPI) -> None:
    """A user edits a message and replies to one of the bot's: handlers see both as Telegram sends them."""
    bot = new_bot()

    @bot.edited_message_handler(func=lambda m: True)
    def edited(message: types.Message) -> None:
        bot.send_message(message.chat.id, f"edited to {message.text}")

    @bot.message_handler(func=lambda m: True)
    def said(message: types.Message) -> None:
        quoted = message.reply_to_message
        bot.send_message(message.chat.id, f"re {quoted.text}" if quoted else "noted")

    with serve_bot(api, bot):
        user = api.user()
        sent = user.send("helo")
        noted = user.wait_for_reply("noted")
        user.edit(sent, "hello")
        user.wait_for_reply("edited to hello")
        user.send("yes", reply_to=noted)
        user.wait_for_reply("re noted")


def test_waits_fail_with_what_did_arrive(api: FakeBotAPI) -> None:
    """Timeouts and missing buttons raise AssertionError that shows what the bot did send."""
    with serve_bot(api, shop_bot()):
        user = api.user()
        menu = user.ask("/shop")
        with pytest.raises(AssertionError, match=r"no reply in chat \d+ matching 'Count' within 0.2s.*Cart: empty"):
            user.wait_for_reply("Count", timeout=0.2)
        with pytest.raises(AssertionError, match=r"no button 'Remove' .*\('Add apple', 'add:apple'\)"):
            user.press(menu, "Remove")
        with pytest.raises(AssertionError, match=r"expected 3 editMessageText call\(s\) within 0.2s, got 0"):
            api.wait_for_calls("editMessageText", count=3, timeout=0.2)


def test_edits_and_deletes_follow_telegram_rules(api: FakeBotAPI) -> None:
    """Not-modified edits fail with 400; an edit without a keyboard removes it; deleted messages can't be pressed."""
    user = api.user()
    with patched_api_url(api):
        bot = new_bot()
        keyboard = types.InlineKeyboardMarkup()
        keyboard.add(types.InlineKeyboardButton("Go", callback_data="go"))
        sent = bot.send_message(user.id, "hi", reply_markup=keyboard)
        with pytest.raises(ApiTelegramException, match="message is not modified"):
            bot.edit_message_text("hi", user.id, sent.message_id, reply_markup=keyboard)
        edited = bot.edit_message_text("bye", user.id, sent.message_id)
        assert edited.reply_markup is None and api.message(user.id, sent.message_id).reply_markup is None
        with_keyboard = bot.edit_message_reply_markup(user.id, sent.message_id, reply_markup=keyboard)
        assert api.wait_for_edit(sent, lambda m: m.reply_markup is not None).message_id == with_keyboard.message_id
        bot.edit_message_reply_markup(user.id, sent.message_id)  # and off again
        assert bot.send_chat_action(user.id, "typing") is True and bot.remove_webhook() is True
        with pytest.raises(AssertionError, match="its buttons .*none"):
            user.press(edited, "Go")
        user.press(sent, "Go")  # the old version still shows it: a tap before the edit arrived
        bot.delete_message(user.id, sent.message_id)
        with pytest.raises(AssertionError, match="is gone"):
            user.press(sent, "Go")
        with pytest.raises(ApiTelegramException, match="message to edit not found"):
            bot.edit_message_text("again", user.id, sent.message_id)
        with pytest.raises(ApiTelegramException, match="query is too old"):
            bot.answer_callback_query("no-such-query")


def test_get_updates_offsets_and_long_poll(api: FakeBotAPI) -> None:
    """getUpdates: offsets confirm, negative offsets keep the tail, and a long poll returns on push."""
    with patched_api_url(api):
        bot = new_bot()
        user = api.user()
        for text in ("a", "b", "c"):
            user.send(text)
        first = bot.get_updates(long_polling_timeout=1)
        assert [u.message.text for u in first] == ["a", "b", "c"]
        assert [u.message.text for u in bot.get_updates(offset=first[1].update_id, long_polling_timeout=1)] == ["b", "c"]
        assert [u.message.text for u in bot.get_updates(offset=-1, long_polling_timeout=1)] == ["c"]
        assert api.pending_updates() == 1

        got: list[types.Update] = []
        poller = threading.Thread(target=lambda: got.extend(bot.get_updates(offset=first[2].update_id + 1, long_polling_timeout=30)))
        started = time.monotonic()
        poller.start()
        api.wait_for_calls("getUpdates", count=4)
        user.send("d")
        poller.join(10)
        assert [u.message.text for u in got] == ["d"]
        assert time.monotonic() - started < 5  # answered on push, not at the 30 s timeout


def test_stop_wakes_a_pending_long_poll() -> None:
    """stop() answers a long poll at once and the server thread exits."""
    api = FakeBotAPI().start()
    url = api.api_url.format(TOKEN, "getUpdates")
    answer: list[Any] = []
    poller = threading.Thread(target=lambda: answer.append(requests.get(url, params={"timeout": 60}, timeout=30).json()))
    poller.start()
    api.wait_for_calls("getUpdates")
    started = time.monotonic()
    api.stop()
    poller.join(10)
    assert answer == [{"ok": True, "result": []}]
    assert time.monotonic() - started < 5
    assert not any(t.name.startswith("FakeBotAPI") for t in threading.enumerate())


def test_parameters_from_query_form_json_and_multipart(api: FakeBotAPI) -> None:
    """Parameters are read from the query string and every body encoding, and typed on the way."""
    url = api.api_url.format(TOKEN, "sendMessage")
    requests.post(url, params={"chat_id": "5"}, data={"text": "42", "reply_markup": '{"inline_keyboard": []}'}, timeout=5)
    requests.post(url, json={"chat_id": 6, "text": "json"}, timeout=5)
    requests.post(api.api_url.format(TOKEN, "sendDocument"), data={"chat_id": "7", "caption": "doc"},
                  files={"document": ("a.txt", b"abc")}, timeout=5)
    form, body, multipart = api.calls()
    assert form.params == {"chat_id": 5, "text": "42", "reply_markup": {"inline_keyboard": []}}
    assert body.params == {"chat_id": 6, "text": "json"}
    assert multipart.params == {"chat_id": 7, "caption": "doc", "document": {"filename": "a.txt", "size": 3}}
    assert api.wait_for_reply(7).document is not None


def test_chunked_request_bodies_are_read(api: FakeBotAPI) -> None:
    """A body sent in chunks (by a client that does not know its size) is read like any other."""
    def body() -> Iterator[bytes]:
        yield b"chat_id=5&te"
        yield b"xt=chunked"

    requests.post(api.api_url.format(TOKEN, "sendMessage"), data=body(),
                  headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=5)
    (call,) = api.calls("sendMessage")
    assert call.params == {"chat_id": 5, "text": "chunked"}


def test_modules_import_each_other_one_way() -> None:
    """Users and the HTTP layer know nothing of FakeBotAPI: the package's imports form no circle."""
    package = Path(telesession.testing.__file__).parent
    imports: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        deps = imports.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text())):  # TYPE_CHECKING imports count too
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module} if node.module else {alias.name for alias in node.names}
    assert imports["_http"] == set()
    assert imports["_actors"] <= {"_json", "_match"}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(dep == target or (dep not in seen and reaches(dep, target, seen | {dep}))
                   for dep in imports.get(start, ()))

    assert [name for name in imports if reaches(name, name, set())] == []


def test_files_can_be_downloaded(api: FakeBotAPI) -> None:
    """add_file makes content reachable through get_file and download_file."""
    file_id = api.add_file(b"hello")
    with patched_api_url(api):
        bot = new_bot()
        assert bot.download_file(bot.get_file(file_id).file_path) == b"hello"


FACTORIES: list[tuple[str, Callable[[], types.Update], str]] = [
    ("message", lambda: updates.message("hi"), "message"),
    ("command", lambda: updates.command("start", "deep-link"), "command"),
    ("topic", lambda: updates.topic_message("t", chat_id=-1001, thread_id=3), "message"),
    ("edited", lambda: updates.edited_message("e"), "edited_message"),
    ("channel_post", lambda: updates.channel_post("c"), "channel_post"),
    ("edited_channel_post", lambda: updates.channel_post("c", edited=True), "edited_channel_post"),
    ("callback", lambda: updates.callback_query("buy"), "callback_query"),
    ("inline_callback", lambda: updates.callback_query("buy", inline_message_id="im-1"), "callback_query"),
    ("inline_query", lambda: updates.inline_query("q"), "inline_query"),
    ("chosen_inline_result", lambda: updates.chosen_inline_result("r1"), "chosen_inline_result"),
    ("poll_answer", lambda: updates.poll_answer("p", [0]), "poll_answer"),
    ("my_chat_member", lambda: updates.my_chat_member(chat_id=-5), "my_chat_member"),
    ("chat_member", lambda: updates.chat_member(chat_id=-1005, new_status="kicked", old_status="member"), "chat_member"),
    ("chat_join_request", lambda: updates.chat_join_request(chat_id=-1005), "chat_join_request"),
    ("message_reaction", lambda: updates.message_reaction(chat_id=-5, message_id=3), "message_reaction"),
    ("business_message", lambda: updates.business_message("b"), "business_message"),
]


def _recording_bot(threaded: bool) -> tuple[telebot.TeleBot, list[tuple[str, Any]], threading.Condition]:
    bot = telebot.TeleBot(TOKEN, threaded=threaded, num_threads=4)
    seen: list[tuple[str, Any]] = []
    cond = threading.Condition()

    def record(kind: str) -> Callable[[Any], None]:
        def handler(obj: Any) -> None:
            with cond:
                seen.append((kind, obj))
                cond.notify_all()
        return handler

    bot.message_handler(commands=["start"])(record("command"))
    bot.message_handler(func=lambda m: True)(record("message"))
    bot.edited_message_handler(func=lambda m: True)(record("edited_message"))
    bot.channel_post_handler(func=lambda m: True)(record("channel_post"))
    bot.edited_channel_post_handler(func=lambda m: True)(record("edited_channel_post"))
    bot.callback_query_handler(func=lambda c: True)(record("callback_query"))
    bot.inline_handler(func=lambda q: True)(record("inline_query"))
    bot.chosen_inline_handler(func=lambda r: True)(record("chosen_inline_result"))
    bot.poll_answer_handler(func=lambda a: True)(record("poll_answer"))
    bot.my_chat_member_handler(func=lambda u: True)(record("my_chat_member"))
    bot.chat_member_handler(func=lambda u: True)(record("chat_member"))
    bot.chat_join_request_handler(func=lambda r: True)(record("chat_join_request"))
    bot.message_reaction_handler(func=lambda r: True)(record("message_reaction"))
    bot.business_message_handler(func=lambda m: True)(record("business_message"))
    return bot, seen, cond


@pytest.mark.parametrize(("name", "factory", "handler"), FACTORIES, ids=[f[0] for f in FACTORIES])
def test_factories_reach_the_right_handler(name: str, factory: Callable[[], types.Update], handler: str) -> None:
    """Each factory's Update is dispatched by telebot to the handler of its type, and only to it."""
    bot, seen, _ = _recording_bot(threaded=False)
    update = factory()
    bot.process_new_updates([update])
    assert [kind for kind, _ in seen] == [handler]


def test_factories_details() -> None:
    """Factories fill what handlers read: ids, commands, topics, inline callbacks, channels."""
    a, b = updates.message("x"), updates.message("y")
    assert a.update_id != b.update_id
    cmd = updates.command("/start", "ref-1", user_id=9)
    assert (cmd.message.text, cmd.message.chat.id, cmd.message.from_user.id) == ("/start ref-1", 9, 9)
    assert cmd.message.entities[0].type == "bot_command"
    topic = updates.topic_message("t", chat_id=-1001, thread_id=3).message
    assert (topic.message_thread_id, topic.is_topic_message, topic.chat.is_forum) == (3, True, True)
    group = updates.message("g", chat_id=-5).message
    assert group.chat.type == "group"
    inline = updates.callback_query("d", inline_message_id="im").callback_query
    assert inline.message is None and inline.inline_message_id == "im"
    post = updates.channel_post("p").channel_post
    assert post.from_user is None and post.sender_chat.id == post.chat.id
    anonymous = updates.poll_answer("p", [1], user_id=None, voter_chat_id=-5).poll_answer
    assert anonymous.user is None and anonymous.voter_chat.id == -5


def test_factory_updates_can_be_pushed_to_the_fake_api(api: FakeBotAPI) -> None:
    """The same factory updates, pushed over HTTP, reach a polling bot's handlers (all types asked for)."""
    bot, seen, cond = _recording_bot(threaded=True)
    with serve_bot(api, bot):
        for _, factory, _ in FACTORIES:
            api.push(factory())
        with cond:
            assert cond.wait_for(lambda: len(seen) == len(FACTORIES), 5), seen
    assert sorted(kind for kind, _ in seen) == sorted(h for _, _, h in FACTORIES)
