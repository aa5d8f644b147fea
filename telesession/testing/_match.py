"""What the waits match a bot's message on: shared by FakeBotAPI and the simulated users."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Union

from telebot import types

#: What a wait can match a message on: None (anything), a regex searched in its text or
#: caption, or a predicate on the Message.
Matching = Union[str, re.Pattern[str], Callable[[types.Message], bool], None]


def matcher(matching: Matching) -> Callable[[types.Message], bool]:
    """``matching`` as a predicate; TypeError for anything that is not a Matching."""
    if matching is None:
        return lambda m: True
    if isinstance(matching, (str, re.Pattern)):
        pattern = re.compile(matching)
        return lambda m: pattern.search(m.text or m.caption or "") is not None
    if callable(matching):
        return matching
    raise TypeError("matching must be None, a regex or a callable taking a Message")


def describe(matching: Matching) -> str:
    """``matching`` as an error message shows it."""
    if matching is None:
        return "anything"
    if isinstance(matching, re.Pattern):
        return repr(matching.pattern)
    return repr(matching) if isinstance(matching, str) else getattr(matching, "__name__", repr(matching))
