"""A chat session and a user session side by side.

In a group, /vote counts the group's votes (per chat) and remembers each member's own total
across every chat (per user). Run: TELEGRAM_BOT_TOKEN=... python examples/per_user.py
"""

import os

import telebot

from telesession import FileStorage, SessionMiddleware, per_user

storage = FileStorage("./sessions")  # one storage: the key helpers never collide
bot = telebot.TeleBot(os.environ["TELEGRAM_BOT_TOKEN"], use_class_middlewares=True)
bot.setup_middleware(SessionMiddleware(initial=lambda: {"votes": 0}, storage=storage))
bot.setup_middleware(
    SessionMiddleware(initial=lambda: {"my_votes": 0}, storage=storage, get_session_key=per_user, attr="user_session")
)


@bot.message_handler(commands=["vote"])
def vote(message):
    message.session["votes"] += 1
    message.user_session["my_votes"] += 1
    bot.reply_to(message, f"This chat: {message.session['votes']}. You, everywhere: {message.user_session['my_votes']}")


if __name__ == "__main__":
    bot.infinity_polling()
