"""An AsyncTeleBot with sessions: a counter and a cart with inline buttons.

Run: TELEGRAM_BOT_TOKEN=... python examples/async_bot.py

The same sessions as the sync middleware: updates of one chat never lose each other's writes,
even though AsyncTeleBot runs a batch's updates at once; a chat waiting for its key never blocks
the event loop. SQLite runs in a thread, so the loop never waits on the disk.
"""

import asyncio
import os
from dataclasses import dataclass, field

from telebot import types
from telebot.async_telebot import AsyncTeleBot

from telesession.asyncio import AsyncSessionMiddleware
from telesession.storage.sqlite import SQLiteStorage


@dataclass
class Shop:
    count: int = 0
    cart: dict[str, int] = field(default_factory=dict)


bot = AsyncTeleBot(os.environ["TELEGRAM_BOT_TOKEN"])
sessions = AsyncSessionMiddleware(initial=Shop, storage=SQLiteStorage("./sessions.db"))
bot.setup_middleware(sessions)


@bot.message_handler(commands=["count"])
async def count(message):
    shop = sessions.of(message)
    shop.count += 1
    await bot.reply_to(message, f"Count: {shop.count}")


def keyboard() -> types.InlineKeyboardMarkup:
    markup = types.InlineKeyboardMarkup()
    markup.row(types.InlineKeyboardButton("Add apple", callback_data="add:apple"))
    return markup


@bot.message_handler(commands=["shop"])
async def shop(message):
    await bot.send_message(message.chat.id, "Your cart: empty", reply_markup=keyboard())


@bot.callback_query_handler(func=lambda call: call.data.startswith("add:"))
async def add(call):
    cart = sessions.of(call).cart
    item = call.data.removeprefix("add:")
    cart[item] = cart.get(item, 0) + 1
    text = "Your cart: " + ", ".join(f"{name} x{n}" for name, n in sorted(cart.items()))
    await bot.edit_message_text(text, call.message.chat.id, call.message.message_id, reply_markup=keyboard())
    await bot.answer_callback_query(call.id)


if __name__ == "__main__":
    asyncio.run(bot.infinity_polling())
