"""telesession: persistent, typed, race-free sessions for pyTelegramBotAPI bots."""

from .engine import SessionEngine as SessionEngine
from .errors import CorruptRecordError as CorruptRecordError
from .errors import DecodeError as DecodeError
from .errors import EncodeError as EncodeError
from .errors import MigrationError as MigrationError
from .errors import SessionError as SessionError
from .errors import SessionKeyError as SessionKeyError
from .errors import StorageError as StorageError
from .keys import SessionKey as SessionKey
from .keys import per_chat as per_chat
from .keys import per_chat_user as per_chat_user
from .keys import per_topic as per_topic
from .keys import per_user as per_user
from .middleware import SessionMiddleware as SessionMiddleware
from .storage.base import SessionStorage as SessionStorage
from .storage.file import FileStorage as FileStorage
from .storage.memory import MemoryStorage as MemoryStorage
from .urls import storage_from_url as storage_from_url

__version__ = "0.2.0"

__all__ = [
    "SessionMiddleware",
    "SessionEngine",
    "SessionStorage",
    "MemoryStorage",
    "FileStorage",
    "storage_from_url",
    "SessionKey",
    "per_chat",
    "per_user",
    "per_chat_user",
    "per_topic",
    "SessionError",
    "StorageError",
    "CorruptRecordError",
    "EncodeError",
    "DecodeError",
    "MigrationError",
    "SessionKeyError",
    "__version__",
]
