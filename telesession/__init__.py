"""telesession: persistent, typed, race-free sessions for pyTelegramBotAPI bots."""
