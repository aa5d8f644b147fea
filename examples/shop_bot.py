"""A shop bot: a counter, a cart filled with inline buttons and a short form, in one typed session.

Run it against Telegram (sessions go to ./sessions and survive restarts)::

    TELEGRAM_BOT_TOKEN=123:ABC python examples/shop_bot.py

or without Telegram, with simulated users: ``python examples/demo.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import telebot
from telebot import types

from telesession import FileStorage, SessionMiddleware, SessionStorage

PRODUCTS = {"apple": "Apple", "bread": "Bread", "milk": "Milk"}


@dataclass
class Form:
    step: str = ""  # "" when no form is open, else "name", "age" or "confirm"
    name: str = ""
    age: int = 0


@dataclass
class ShopSession:
    count: int = 0
    cart: dict[str, int] = field(default_factory=dict)  # product -> quantity
    form: Form = field(default_factory=Form)
    name: str = ""  # what the form saved
    age: int = 0


def cart_text(cart: dict[str, int]) -> str:
    items = ", ".join(f"{PRODUCTS[p]} x{n}" for p, n in sorted(cart.items()))
    return f"Your cart: {items or 'empty'}"


def shop_keyboard() -> types.InlineKeyboardMarkup:
    keyboard = types.InlineKeyboardMarkup()
    keyboard.row(*(types.InlineKeyboardButton(f"Add {p}", callback_data=f"add:{p}") for p in PRODUCTS))
    keyboard.row(types.InlineKeyboardButton("Clear", callback_data="clear"))
    return keyboard


def confirm_keyboard() -> types.InlineKeyboardMarkup:
    keyboard = types.InlineKeyboardMarkup()
    keyboard.row(
        types.InlineKeyboardButton("Save", callback_data="form:save"),
        types.InlineKeyboardButton("Start over", callback_data="form:restart"),
    )
    return keyboard


def make_bot(token: str, storage: SessionStorage, **bot_options: object) -> telebot.TeleBot:
    """The bot, with its sessions in ``storage``; ``bot_options`` go to TeleBot (threaded, num_threads...)."""
    bot = telebot.TeleBot(token, use_class_middlewares=True, **bot_options)  # type: ignore[arg-type]
    bot.setup_middleware(SessionMiddleware(initial=ShopSession, storage=storage))

    # Handlers get the chat's session as `session` (also `message.session`); changes to it are
    # saved when the handler returns, one update of a chat at a time.

    @bot.message_handler(commands=["start"])
    def start(message: types.Message, session: ShopSession) -> None:
        bot.send_message(message.chat.id, "Hi! Try /count, /shop or /form.")

    @bot.message_handler(commands=["count"])
    def count(message: types.Message, session: ShopSession) -> None:
        session.count += 1
        bot.send_message(message.chat.id, f"Count: {session.count}")

    @bot.message_handler(commands=["shop"])
    def shop(message: types.Message, session: ShopSession) -> None:
        bot.send_message(message.chat.id, cart_text(session.cart), reply_markup=shop_keyboard())

    @bot.callback_query_handler(func=lambda call: call.data == "clear" or call.data.startswith("add:"))
    def change_cart(call: types.CallbackQuery, session: ShopSession) -> None:
        if call.data == "clear":
            session.cart.clear()
        else:
            product = call.data.removeprefix("add:")
            session.cart[product] = session.cart.get(product, 0) + 1
        text = cart_text(session.cart)
        if text != call.message.text:  # Telegram refuses an edit that changes nothing
            bot.edit_message_text(text, call.message.chat.id, call.message.message_id, reply_markup=shop_keyboard())
        bot.answer_callback_query(call.id)

    # The form: /form, then each text message moves it one step; filters read the session.

    @bot.message_handler(commands=["form"])
    def form(message: types.Message, session: ShopSession) -> None:
        session.form = Form(step="name")
        bot.send_message(message.chat.id, "What is your name?")

    @bot.message_handler(func=lambda m: m.session.form.step == "name", content_types=["text"])
    def form_name(message: types.Message, session: ShopSession) -> None:
        session.form.name = message.text.strip()
        session.form.step = "age"
        bot.send_message(message.chat.id, f"How old are you, {session.form.name}?")

    @bot.message_handler(func=lambda m: m.session.form.step == "age", content_types=["text"])
    def form_age(message: types.Message, session: ShopSession) -> None:
        text = message.text.strip()
        if not text.isdigit() or not 1 <= int(text) <= 129:
            bot.send_message(message.chat.id, "Please send your age as a number from 1 to 129.")
            return
        session.form.age = int(text)
        session.form.step = "confirm"
        bot.send_message(
            message.chat.id, f"Name: {session.form.name}, age: {session.form.age}. Save?",
            reply_markup=confirm_keyboard(),
        )

    @bot.message_handler(func=lambda m: m.session.form.step == "confirm", content_types=["text"])
    def form_waiting(message: types.Message, session: ShopSession) -> None:
        bot.send_message(message.chat.id, "Press Save or Start over above.")

    @bot.callback_query_handler(func=lambda call: call.data.startswith("form:"))
    def form_button(call: types.CallbackQuery, session: ShopSession) -> None:
        chat_id, message_id = call.message.chat.id, call.message.message_id
        if session.form.step != "confirm":  # an old button, pressed again
            bot.answer_callback_query(call.id, "This form is closed.")
            return
        if call.data == "form:save":
            session.name, session.age = session.form.name, session.form.age
            session.form = Form()
            bot.edit_message_text(f"Saved: {session.name}, {session.age}.", chat_id, message_id)
        else:
            session.form = Form(step="name")
            bot.edit_message_text("Starting over.", chat_id, message_id)
            bot.send_message(chat_id, "What is your name?")
        bot.answer_callback_query(call.id)

    return bot


if __name__ == "__main__":
    make_bot(os.environ["TELEGRAM_BOT_TOKEN"], FileStorage("./sessions")).infinity_polling()
