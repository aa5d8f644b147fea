"""One error tree for everything telesession raises.

Every error carries what it is about as attributes (the session key, the field path, the
location of a record) and, where it wraps another failure, keeps it as ``original_error`` and
as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "SessionError",
    "StorageError",
    "CorruptRecordError",
    "EncodeError",
    "DecodeError",
    "SessionKeyError",
    "MigrationError",
]


class SessionError(Exception):
    """Base of every telesession error."""

    def __init__(self, message: str, *, key: str | None = None, original_error: BaseException | None = None):
        super().__init__(message)
        self.message = message
        self.key = key
        self.original_error = original_error

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keyword-only arguments do not survive the default pickling of exceptions.
        return _rebuild, (type(self), self.message, dict(self.__dict__))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[SessionError], message: str, state: dict[str, object]) -> SessionError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class StorageError(SessionError):
    """A storage could not read, write or lock a record (I/O, connection, permissions).

    ``location`` names where the storage looked (a file path, a database, a URL) when known.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        location: str | None = None,
        original_error: BaseException | None = None,
    ):
        super().__init__(message, key=key, original_error=original_error)
        self.location = location


class CorruptRecordError(StorageError, ValueError):
    """A stored record exists but cannot be read as a session record.

    The record is left exactly as it was: telesession never replaces data it could not read.
    """


class EncodeError(SessionError, TypeError):
    """A session holds a value that cannot be stored; ``path`` names the field (``cart.items[2].price``)."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        key: str | None = None,
        original_error: BaseException | None = None,
    ):
        super().__init__(message, key=key, original_error=original_error)
        self.path = path


class DecodeError(SessionError, ValueError):
    """Stored data does not fit the session class; ``path`` names the field."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        key: str | None = None,
        original_error: BaseException | None = None,
    ):
        super().__init__(message, key=key, original_error=original_error)
        self.path = path


class SessionKeyError(SessionError, ValueError):
    """A session key is unusable: not a string, empty, already held by the same update, or one whose wait would never end."""


class MigrationError(SessionError, ValueError):
    """A stored record can't be brought to this code's schema: it is newer, or a migration failed.

    ``stored_version`` and ``code_version`` are the two schema numbers; ``step`` the migration
    that failed (``None`` for a newer record). The record is left as it was.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        stored_version: int = 0,
        code_version: int = 0,
        step: int | None = None,
        original_error: BaseException | None = None,
    ):
        super().__init__(message, key=key, original_error=original_error)
        self.stored_version = stored_version
        self.code_version = code_version
        self.step = step
