"""Test telebot bots end to end without Telegram: a fake Bot API, simulated users, update factories.

A bot under test runs unchanged, polling over HTTP against :class:`FakeBotAPI`::

    from telesession.testing import FakeBotAPI, serve_bot

    with FakeBotAPI() as api, serve_bot(api, make_bot("123:TEST")):
        alice = api.user(first_name="Alice")
        assert alice.ask("/count").text == "Count: 1"
        menu = alice.ask("/shop")
        alice.press(menu, "Add apple")
        assert api.wait_for_edit(menu).text == "Your cart: Apple x1"

:func:`serve_async_bot` does the same for an AsyncTeleBot, with the same users and waits. For
unit tests without a server, :mod:`telesession.testing.updates` builds real
``telebot.types.Update`` objects to feed to ``bot.process_new_updates``.

Nothing in telesession's core imports this package.
"""

from . import updates as updates
from ._actors import BotAPI as BotAPI
from ._actors import FakeChat as FakeChat
from ._actors import FakeUser as FakeUser
from ._api import Call as Call
from ._api import FakeBotAPI as FakeBotAPI
from ._async import BotLoop as BotLoop
from ._async import serve_async_bot as serve_async_bot
from ._match import Matching as Matching
from ._run import ALL_UPDATES as ALL_UPDATES
from ._run import patched_api_url as patched_api_url
from ._run import serve_bot as serve_bot

__all__ = [
    "ALL_UPDATES",
    "BotAPI",
    "BotLoop",
    "Call",
    "FakeBotAPI",
    "FakeChat",
    "FakeUser",
    "Matching",
    "patched_api_url",
    "serve_async_bot",
    "serve_bot",
    "updates",
]
