"""A storage of your own: five methods over JSON values.

This one keeps sessions in a stdlib ``dbm.dumb`` database (plain files, on every platform; the
default ``dbm`` backend of Python 3.13 is bound to the thread that opened it, and telebot's
handlers run in worker threads). It is for one process, so it keeps the default ``lock``
(in-process locking is the middleware's job).
Run: TELEGRAM_BOT_TOKEN=... python examples/custom_storage.py
"""

import dbm.dumb
import json
import os
import threading

import telebot

from telesession import SessionMiddleware, SessionStorage


class DbmStorage(SessionStorage):
    def __init__(self, path: str):
        self._db = dbm.dumb.open(path, "c")
        self._mutex = threading.Lock()  # dbm objects are not thread-safe; telebot's workers are threads

    def get(self, key):
        with self._mutex:
            raw = self._db.get(key.encode())
        return None if raw is None else json.loads(raw)

    def set(self, key, value):
        with self._mutex:
            self._db[key.encode()] = json.dumps(value)

    def delete(self, key):
        with self._mutex:
            self._db.pop(key.encode(), None)

    def clear(self):
        with self._mutex:
            for key in list(self._db.keys()):
                del self._db[key]

    def close(self):
        self._db.close()


bot = telebot.TeleBot(os.environ["TELEGRAM_BOT_TOKEN"], use_class_middlewares=True)
bot.setup_middleware(SessionMiddleware(initial=lambda: {"count": 0}, storage=DbmStorage("./sessions.dbm")))


@bot.message_handler(commands=["count"])
def count(message):
    message.session["count"] += 1
    bot.reply_to(message, f"Count: {message.session['count']}")


if __name__ == "__main__":
    bot.infinity_polling()
