"""Versioned migrations: records of older schemas upgraded step by step, newer ones never downgraded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from telesession import MigrationError, SessionMiddleware, SessionStorage

from .conftest import make_bot, stored, text_update


@dataclass
class Profile:
    """The session class after three changes to the one first deployed ({"name": "Ann Lee", "age": "31"})."""

    first_name: str = ""
    last_name: str = ""
    age: int = 0
    visits: int = 0
    tags: list[str] = field(default_factory=list)


# The README's recipes, as they are there.
def rename_field(data: dict[str, Any]) -> dict[str, Any]:  # 1: "name" became "full_name"
    data["full_name"] = data.pop("name", "")
    return data


def split_field(data: dict[str, Any]) -> dict[str, Any]:  # 2: "full_name" split in two
    first, _, last = data.pop("full_name", "").partition(" ")
    data["first_name"], data["last_name"] = first, last
    return data


def change_type(data: dict[str, Any]) -> dict[str, Any]:  # 3: "age" was a string
    data["age"] = int(data.get("age") or 0)
    return data


MIGRATIONS = {1: rename_field, 2: split_field, 3: change_type}


def profile_bot(storage: SessionStorage, migrations: Any = MIGRATIONS) -> tuple[Any, list[Profile]]:
    bot = make_bot()
    sessions = SessionMiddleware(initial=Profile, storage=storage, migrations=migrations)
    bot.setup_middleware(sessions)
    seen: list[Profile] = []

    @bot.message_handler(commands=["visit"])
    def visit(message: Any) -> None:
        sessions.of(message).visits += 1

    @bot.message_handler(commands=["look"])
    def look(message: Any) -> None:
        seen.append(sessions.of(message))

    return bot, seen


def test_records_written_by_todays_code_are_upgraded_step_by_step(storage: SessionStorage) -> None:
    """A schema-0 record (what telesession has always written) goes through 1, 2, 3 and loads into the class."""
    storage.set("42", {"data": {"name": "Ann Lee", "age": "31", "visits": 2}, "schema": 0, "saved_at": 1.0})
    bot, seen = profile_bot(storage)
    bot.process_new_updates([text_update("/visit")])
    assert storage.get("42")["schema"] == 3
    assert stored(storage, 42) == {"first_name": "Ann", "last_name": "Lee", "age": 31, "visits": 3, "tags": []}
    bot.process_new_updates([text_update("/look")])
    assert seen == [Profile("Ann", "Lee", 31, 3)]


def test_an_upgraded_record_is_written_back_even_when_nothing_changed(storage: SessionStorage) -> None:
    """A handler that only reads still leaves the record at the current schema (once)."""
    storage.set("42", {"data": {"full_name": "Bo Ek", "age": "7"}, "schema": 1, "saved_at": 1.0})
    bot, seen = profile_bot(storage)
    bot.process_new_updates([text_update("/look")])
    record = storage.get("42")
    assert record["schema"] == 3 and record["data"]["first_name"] == "Bo" and seen == [Profile("Bo", "Ek", 7)]
    bot.process_new_updates([text_update("/look")])
    assert storage.get("42")["saved_at"] == record["saved_at"]  # current now: not written again


def test_a_record_from_a_newer_schema_is_left_alone(storage: SessionStorage, log_errors: pytest.LogCaptureFixture) -> None:
    """A record of schema 5 under code at 3: not handled, both versions named, the record untouched, never downgraded."""
    newer = {"data": {"first_name": "Cy", "shiny_new": True}, "schema": 5, "saved_at": 1.0}
    storage.set("42", newer)
    bot, seen = profile_bot(storage)
    bot.process_new_updates([text_update("/visit"), text_update("/look")])
    assert storage.get("42") == newer and seen == []
    assert "'42'" in log_errors.text and "schema 5" in log_errors.text and "schema 3" in log_errors.text


def test_a_migration_that_raises_names_its_step(storage: SessionStorage, log_errors: pytest.LogCaptureFixture) -> None:
    """A failing step stops the update and names the step; the record stays as it was."""
    old = {"data": {"name": "Di", "age": "not a number"}, "schema": 0, "saved_at": 1.0}
    storage.set("42", old)
    bot, seen = profile_bot(storage)
    bot.process_new_updates([text_update("/look")])
    assert storage.get("42") == old and seen == []
    assert "migration 3" in log_errors.text and "'42'" in log_errors.text and "ValueError" in log_errors.text


def test_a_migration_must_return_a_dict(storage: SessionStorage, log_errors: pytest.LogCaptureFixture) -> None:
    """A step that forgets to return its data is caught as failing, not stored."""
    storage.set("42", {"data": {"name": "Ed"}, "schema": 0, "saved_at": 1.0})
    bot, _ = profile_bot(storage, {1: lambda data: None})
    bot.process_new_updates([text_update("/visit")])
    assert storage.get("42")["schema"] == 0 and "migration 1" in log_errors.text and "not a dict" in log_errors.text


@pytest.mark.parametrize("migrations", [{2: rename_field}, {1: rename_field, 3: change_type}, {0: rename_field}, {1: "x"}], ids=repr)
def test_steps_must_be_one_to_n_without_gaps(migrations: Any) -> None:
    """Keys that are not 1..N, or steps that are not functions, are refused when the middleware is built."""
    with pytest.raises(ValueError, match="without gaps"):
        SessionMiddleware(initial=Profile, migrations=migrations)


def test_get_migrates_in_memory_without_writing(storage: SessionStorage) -> None:
    """get() of an old record gives the upgraded session and leaves the stored record as it was."""
    old = {"data": {"name": "Fa Yu", "age": "3"}, "schema": 0, "saved_at": 1.0}
    storage.set("k", old)
    sessions = SessionMiddleware(initial=Profile, storage=storage, migrations=MIGRATIONS)
    assert sessions.get("k") == Profile("Fa", "Yu", 3)
    assert storage.get("k") == old


def test_dict_sessions_migrate_too(storage: SessionStorage) -> None:
    """Plain dict sessions take the same migrations."""
    storage.set("42", {"data": {"name": "Gu"}, "schema": 0, "saved_at": 1.0})
    bot = make_bot()
    bot.setup_middleware(SessionMiddleware(initial=dict, storage=storage, migrations={1: rename_field}))
    bot.process_new_updates([text_update("hi")])
    assert storage.get("42")["schema"] == 1 and stored(storage, 42) == {"full_name": "Gu"}


def test_migration_errors_carry_the_versions_and_the_step(storage: SessionStorage) -> None:
    """Outside handlers the same refusals raise MigrationError, with the versions (and the failing step) as attributes."""
    sessions = SessionMiddleware(initial=Profile, storage=storage, migrations=MIGRATIONS)
    storage.set("newer", {"data": {}, "schema": 5, "saved_at": 1.0})
    storage.set("bad", {"data": {"name": "Di", "age": "x"}, "schema": 0, "saved_at": 1.0})
    with pytest.raises(MigrationError) as newer:
        sessions.get("newer")
    assert (newer.value.key, newer.value.stored_version, newer.value.code_version, newer.value.step) == ("newer", 5, 3, None)
    assert "update" not in str(newer.value)  # no update is involved here
    with pytest.raises(MigrationError) as bad:
        with sessions.edit("bad"):
            pass
    assert (bad.value.key, bad.value.stored_version, bad.value.step) == ("bad", 0, 3)
    assert isinstance(bad.value.original_error, ValueError) and storage.get("bad")["schema"] == 0
