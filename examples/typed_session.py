"""A typed session: a dataclass with methods, nested data and defaults.

Run: TELEGRAM_BOT_TOKEN=... python examples/typed_session.py
"""

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

import telebot

from telesession import FileStorage, SessionMiddleware


@dataclass
class Note:
    text: str
    at: datetime


@dataclass
class MySession:
    count: int = 0
    username: Optional[str] = None
    notes: list[Note] = field(default_factory=list)  # a field added later loads with its default

    def increment(self) -> None:
        self.count += 1


bot = telebot.TeleBot(os.environ["TELEGRAM_BOT_TOKEN"], use_class_middlewares=True)
bot.setup_middleware(SessionMiddleware(initial=MySession, storage=FileStorage("./sessions")))


@bot.message_handler(commands=["count"])
def count(message):
    message.session.increment()
    bot.reply_to(message, f"Count: {message.session.count}")


@bot.message_handler(commands=["note"])
def note(message, session: MySession):  # the session also arrives as a parameter named like attr
    session.notes.append(Note(message.text.partition(" ")[2], datetime.now(timezone.utc)))
    bot.reply_to(message, f"{len(session.notes)} notes")


if __name__ == "__main__":
    bot.infinity_polling()
