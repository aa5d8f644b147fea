"""A job outside handlers: a daily check-in streak, reset by a scheduled job that edits every session.

Run: TELEGRAM_BOT_TOKEN=... python examples/scheduled_job.py   (RESET_EVERY=seconds, default a day)

/checkin counts a streak; the job, once a period, breaks the streak of every chat that did not
check in and clears the flag of those that did. It edits each session under the same lock as
the handlers, so a /checkin arriving while the job runs is never lost, and sessions not saved
for 90 days are swept away.
"""

import os
import threading
from dataclasses import dataclass

import telebot

from telesession import FileStorage, SessionMiddleware


@dataclass
class Streak:
    days: int = 0
    checked_in: bool = False


bot = telebot.TeleBot(os.environ["TELEGRAM_BOT_TOKEN"], use_class_middlewares=True)
sessions = SessionMiddleware(initial=Streak, storage=FileStorage("./sessions"), ttl=90 * 24 * 3600)
bot.setup_middleware(sessions)


@bot.message_handler(commands=["checkin"])
def checkin(message):
    streak = sessions.of(message)
    if not streak.checked_in:
        streak.checked_in, streak.days = True, streak.days + 1
    bot.reply_to(message, f"Streak: {streak.days} day(s)")


def end_of_day() -> int:
    """The job: for every chat, keep or break its streak. Returns how many streaks broke."""
    broken = 0
    for key in list(sessions.keys()):
        with sessions.edit(key) as streak:  # waits while an update of that chat runs
            if not streak.checked_in and streak.days:
                streak.days, broken = 0, broken + 1
            streak.checked_in = False
    sessions.sweep()
    return broken


def every(seconds: float, job) -> threading.Event:
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(seconds):
            job()

    threading.Thread(target=run, name="end-of-day", daemon=True).start()
    return stop


if __name__ == "__main__":
    every(float(os.environ.get("RESET_EVERY", 24 * 3600)), end_of_day)
    bot.infinity_polling()
