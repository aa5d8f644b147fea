"""The smallest session: a dict per chat. Run: TELEGRAM_BOT_TOKEN=... python examples/counter.py"""

import os

import telebot

from telesession import FileStorage, SessionMiddleware

bot = telebot.TeleBot(os.environ["TELEGRAM_BOT_TOKEN"], use_class_middlewares=True)
bot.setup_middleware(SessionMiddleware(initial=lambda: {"count": 0}, storage=FileStorage("./sessions")))


@bot.message_handler(commands=["count"])
def count(message):
    message.session["count"] += 1
    bot.reply_to(message, f"Count: {message.session['count']}")


if __name__ == "__main__":
    bot.infinity_polling()
