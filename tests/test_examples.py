"""The examples run unchanged against the fake Bot API and do what their docstrings say."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest

from telesession.testing import FakeBotAPI, serve_bot

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    return run(name, tmp_path, monkeypatch)["bot"]


def run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The example's globals, run as a module (not as __main__: no polling)."""
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:TEST")
    monkeypatch.chdir(tmp_path)  # the examples keep ./sessions in the working directory
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="example")


@pytest.mark.parametrize("name", ["counter", "typed_session", "custom_storage"])
def test_counting_examples(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/count counts per chat and the count survives in the example's storage."""
    bot = load(name, tmp_path, monkeypatch)
    with FakeBotAPI() as api, serve_bot(api, bot):
        alice, bob = api.user(first_name="Alice"), api.user(first_name="Bob")
        assert alice.ask("/count").text == "Count: 1"
        assert alice.ask("/count").text == "Count: 2"
        assert bob.ask("/count").text == "Count: 1"
    if name == "custom_storage":
        bot.middlewares[0].storage.close()


def test_per_user_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Votes count per chat and per user across chats."""
    bot = load("per_user", tmp_path, monkeypatch)
    with FakeBotAPI() as api, serve_bot(api, bot):
        alice, bob = api.user(first_name="Alice"), api.user(first_name="Bob")
        group = api.group("Votes")
        group.send(alice, "/vote")
        assert group.wait_for_reply().text == "This chat: 1. You, everywhere: 1"
        group.send(bob, "/vote")
        assert group.wait_for_reply().text == "This chat: 2. You, everywhere: 1"
        assert alice.ask("/vote").text == "This chat: 1. You, everywhere: 2"


def test_form_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The form asks name then age, insists on a number, and forgets the answers when done."""
    bot = load("form", tmp_path, monkeypatch)
    with FakeBotAPI() as api, serve_bot(api, bot):
        alice = api.user(first_name="Alice")
        assert alice.ask("/form").text == "What is your name?"
        assert alice.ask("Alice").text == "How old are you?"
        assert alice.ask("old").text == "A number, please."
        assert alice.ask("30").text == "Thanks, Alice (30)."
    assert list(bot.middlewares[0].storage.keys()) == []


def test_scheduled_job_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The end-of-day job keeps the streaks of chats that checked in, breaks the others', while the bot runs."""
    example = run("scheduled_job", tmp_path, monkeypatch)
    with FakeBotAPI() as api, serve_bot(api, example["bot"]):
        alice, bob = api.user(first_name="Alice"), api.user(first_name="Bob")
        assert alice.ask("/checkin").text == "Streak: 1 day(s)"
        assert bob.ask("/checkin").text == "Streak: 1 day(s)"
        assert alice.ask("/checkin").text == "Streak: 1 day(s)"  # once a day
        # A reply goes out before its update saves, and the job sees a chat only once it is
        # stored: wait for Bob's first session to land (the edit waits for his update's hold).
        with example["sessions"].edit(str(bob.id)):
            pass
        assert example["end_of_day"]() == 0
        assert alice.ask("/checkin").text == "Streak: 2 day(s)"
        assert example["end_of_day"]() == 1  # Bob did not check in today
        assert bob.ask("/checkin").text == "Streak: 1 day(s)"
        assert alice.ask("/checkin").text == "Streak: 3 day(s)"


def test_migration_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions stored by version 0 of the bot load as today's Profile and are written back upgraded."""
    from telesession import FileStorage

    old = FileStorage(tmp_path / "sessions")
    old.set("100001", {"data": {"name": "Ann Lee", "age": "31"}, "schema": 0, "saved_at": 1.0})
    example = run("migration", tmp_path, monkeypatch)
    with FakeBotAPI() as api, serve_bot(api, example["bot"]):
        ann = api.user(100001, first_name="Ann")
        assert ann.ask("/me").text == "Ann Lee, 31"
        assert ann.ask("/birthday").text == "Happy birthday! Now 32."
    assert old.get("100001")["schema"] == 2 and old.get("100001")["data"] == {"first_name": "Ann", "last_name": "Lee", "age": 32}
