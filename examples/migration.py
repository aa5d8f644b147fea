"""Changing the session class of a running bot: migrations upgrade stored sessions as they load.

Run: TELEGRAM_BOT_TOKEN=... python examples/migration.py

Version 0 of this bot stored {"name": "Ann Lee", "age": "31"}. Since then "name" was split in
two and "age" became a number. Each migration takes the stored data of the version before it
and returns the next; sessions saved by any earlier version load as today's Profile, and are
written back upgraded.
"""

import os
from dataclasses import dataclass

import telebot

from telesession import FileStorage, SessionMiddleware


@dataclass
class Profile:
    first_name: str = ""
    last_name: str = ""
    age: int = 0


def split_name(data: dict) -> dict:  # version 1
    first, _, last = data.pop("name", "").partition(" ")
    return {**data, "first_name": first, "last_name": last}


def age_to_int(data: dict) -> dict:  # version 2
    return {**data, "age": int(data.get("age") or 0)}


bot = telebot.TeleBot(os.environ["TELEGRAM_BOT_TOKEN"], use_class_middlewares=True)
sessions = SessionMiddleware(initial=Profile, storage=FileStorage("./sessions"), migrations={1: split_name, 2: age_to_int})
bot.setup_middleware(sessions)


@bot.message_handler(commands=["me"])
def me(message):
    profile = sessions.of(message)
    bot.reply_to(message, f"{profile.first_name} {profile.last_name}, {profile.age}".strip(", "))


@bot.message_handler(commands=["birthday"])
def birthday(message):
    sessions.of(message).age += 1
    bot.reply_to(message, f"Happy birthday! Now {sessions.of(message).age}.")


if __name__ == "__main__":
    bot.infinity_polling()
