"""A multi-step form: the session remembers which question comes next.

Run: TELEGRAM_BOT_TOKEN=... python examples/form.py
"""

import os
from dataclasses import dataclass
from typing import Optional

import telebot

from telesession import FileStorage, SessionMiddleware, per_chat_user


@dataclass
class Form:
    step: Optional[str] = None  # None: no form in progress
    name: Optional[str] = None
    age: Optional[int] = None


bot = telebot.TeleBot(os.environ["TELEGRAM_BOT_TOKEN"], use_class_middlewares=True)
# Per user in each chat: two people filling the form in one group don't mix their answers.
bot.setup_middleware(SessionMiddleware(initial=Form, storage=FileStorage("./sessions"), get_session_key=per_chat_user))


@bot.message_handler(commands=["form"])
def start(message):
    message.session = Form(step="name")  # a new object replaces the stored one
    bot.reply_to(message, "What is your name?")


@bot.message_handler(func=lambda m: m.session is not None and m.session.step == "name")
def name(message):
    message.session.name, message.session.step = message.text, "age"
    bot.reply_to(message, "How old are you?")


@bot.message_handler(func=lambda m: m.session is not None and m.session.step == "age")
def age(message):
    if not (message.text or "").isdigit():
        bot.reply_to(message, "A number, please.")
        return
    form = message.session
    bot.reply_to(message, f"Thanks, {form.name} ({message.text}).")
    message.session = None  # done: assigning None deletes the record


if __name__ == "__main__":
    bot.infinity_polling()
