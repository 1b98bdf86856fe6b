"""Storage URLs → Optuna storages: the default local file, SQLite, PostgreSQL/MySQL, journal, Redis."""

from __future__ import annotations

from pathlib import Path

from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalRedisBackend

from hpsearch.errors import HPSearchError

__all__ = ["DEFAULT_STORAGE", "StorageError", "describe_storage", "open_storage"]

DEFAULT_STORAGE = "sqlite:///hpsearch.db"
_RDB_SCHEMES = ("sqlite:///", "postgresql://", "postgresql+psycopg2://", "postgresql+psycopg://", "mysql://",
                "mysql+pymysql://")


class StorageError(HPSearchError):
    """A storage URL that is malformed or cannot be opened."""


def open_storage(url: str | None = None) -> BaseStorage:
    """Open ``url``: ``sqlite:///FILE``, ``postgresql://…``, ``mysql://…``, ``journal:FILE`` (or a
    ``*.journal`` / ``*.log`` path), ``redis://…``, or ``memory``; None means DEFAULT_STORAGE."""
    url = url or DEFAULT_STORAGE
    try:
        if url == "memory":
            return InMemoryStorage()
        if url.startswith("journal:") or url.endswith((".journal", ".log")):
            path = Path(url.removeprefix("journal:"))
            if not path.parent.is_dir():
                raise StorageError(f"storage folder does not exist (--storage {url})")
            return JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("redis://"):
            return JournalStorage(JournalRedisBackend(url))
        if url.startswith(_RDB_SCHEMES):
            if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).parent.is_dir():
                raise StorageError(f"storage folder does not exist (--storage {url})")
            return RDBStorage(url)
    except StorageError:
        raise
    except Exception as exc:  # SQLAlchemy, redis and OS errors all mean: cannot open this storage
        raise StorageError(f"cannot open storage (--storage {url}): {_first_line(exc)}") from None
    raise StorageError(f"storage must be sqlite:///FILE, postgresql://…, mysql://…, journal:FILE, redis://… "
                       f"or memory, got {url!r}")


def describe_storage(storage: BaseStorage) -> str:
    """A short human name for messages."""
    if isinstance(storage, RDBStorage):
        return str(storage.engine.url.render_as_string(hide_password=True))
    return type(storage).__name__


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

