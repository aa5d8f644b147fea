"""The examples run unchanged against the fake Bot API and do what their docstrings say."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest

from telesession.testing import FakeBotAPI, serve_bot

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:TEST")
    monkeypatch.chdir(tmp_path)  # the examples keep ./sessions in the working directory
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="example")["bot"]


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
